"""The seed's LCNN training recipes run in Keras itself: the reference `lcnn train` is judged by.

This is the code of ../shared/seeds/000_*.txt (ozora-ogino/LCNN, `build_lcnn`, `test_mint.py`,
`test_cifar10.py`) with two changes that keep it offline and comparable:

- data is read from the same files `lcnn` reads (MNIST idx .gz; the CIFAR-10 JPEG folder)
  instead of `keras.datasets`, which downloads;
- for an image folder the validation set is the first `--validation-split` of each class
  folder (sorted file names), as `lcnn train --dataset images:DIR` and Keras'
  `flow_from_directory(subset=...)` take it; for MNIST it is Keras' `validation_split` (the last
  20% of the training arrays), as in the seed.

It prints one line per epoch and the seed's two result lines, and writes the Keras history as
CSV (same columns as `lcnn`'s history.csv) when `--out` is given.

Requirements: tensorflow (CPU is enough), numpy, pillow (image folders only).

    python3 reference/keras_seed_train.py --dataset mnist --data-dir ../shared/data
    python3 reference/keras_seed_train.py --dataset images:/path/cifar10-jpg \
        --batch-size 64 --epochs 100 --patience 5 [--shift 0.1 --flip]
"""

import argparse
import csv
import gzip
import os
import sys
import time

import numpy as np


def read_idx(path):
    """An idx file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise SystemExit(f"{path}: not an unsigned-byte idx file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(data_dir):
    d = os.path.join(data_dir, "mnist")
    x_train = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    y_train = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    x_test = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
    y_test = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    return x_train[..., None], y_train, x_test[..., None], y_test, 10


def load_folder(root, validation_split):
    """train/<class>/*, test/<class>/*: (train, val, test) arrays, classes sorted by name."""
    from PIL import Image

    classes = sorted(c for c in os.listdir(os.path.join(root, "train")) if not c.startswith("."))

    def read(split):
        per_class = []
        for label, c in enumerate(classes):
            folder = os.path.join(root, split, c)
            files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
            imgs = [np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")) for f in files]
            per_class.append((np.stack(imgs), np.full(len(imgs), label, dtype=np.int64)))
        return per_class

    train = read("train")
    x_tr, y_tr, x_va, y_va = [], [], [], []
    for x, y in train:
        n_val = int(len(x) * validation_split)  # floor, as lcnn and flow_from_directory
        x_va.append(x[:n_val]), y_va.append(y[:n_val])
        x_tr.append(x[n_val:]), y_tr.append(y[n_val:])
    test = read("test")
    return (
        np.concatenate(x_tr),
        np.concatenate(y_tr),
        np.concatenate(x_va),
        np.concatenate(y_va),
        np.concatenate([x for x, _ in test]),
        np.concatenate([y for _, y in test]),
        len(classes),
    )


def build_lcnn(shape, n_label, keras):
    """The seed's `build_lcnn`, verbatim up to the Maxout layer (max over channel pairs)."""
    from keras.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, Layer
    from keras.layers import MaxPool2D
    from keras.models import Model

    class Maxout(Layer):
        def __init__(self, num_unit, **kwargs):
            super().__init__(**kwargs)
            self.num_unit = num_unit

        def call(self, inputs):
            shape = list(inputs.shape)
            c = shape[-1]
            new_shape = [-1] + shape[1:-1] + [self.num_unit, c // self.num_unit]
            return keras.ops.max(keras.ops.reshape(inputs, new_shape), axis=-1)

    def MaxOutConv2D(x, dim, kernel_size, strides, padding="same"):
        conv_out = Conv2D(dim, kernel_size=kernel_size, strides=strides, padding=padding)(x)
        return Maxout(int(dim / 2))(conv_out)

    def MaxOutDense(x, dim):
        return Maxout(int(dim / 2))(Dense(dim)(x))

    input = Input(shape=shape)
    conv2d_1 = MaxOutConv2D(input, 64, kernel_size=5, strides=1, padding="same")
    maxpool_1 = MaxPool2D(pool_size=(2, 2), strides=(2, 2))(conv2d_1)
    conv_2d_2 = MaxOutConv2D(maxpool_1, 64, kernel_size=1, strides=1, padding="same")
    batch_norm_2 = BatchNormalization()(conv_2d_2)
    conv2d_3 = MaxOutConv2D(batch_norm_2, 96, kernel_size=3, strides=1, padding="same")
    maxpool_3 = MaxPool2D(pool_size=(2, 2), strides=(2, 2))(conv2d_3)
    batch_norm_3 = BatchNormalization()(maxpool_3)
    conv_2d_4 = MaxOutConv2D(batch_norm_3, 96, kernel_size=1, strides=1, padding="same")
    batch_norm_4 = BatchNormalization()(conv_2d_4)
    conv2d_5 = MaxOutConv2D(batch_norm_4, 128, kernel_size=3, strides=1, padding="same")
    maxpool_5 = MaxPool2D(pool_size=(2, 2), strides=(2, 2))(conv2d_5)
    conv_2d_6 = MaxOutConv2D(maxpool_5, 128, kernel_size=1, strides=1, padding="same")
    batch_norm_6 = BatchNormalization()(conv_2d_6)
    conv_2d_7 = MaxOutConv2D(batch_norm_6, 64, kernel_size=3, strides=1, padding="same")
    batch_norm_7 = BatchNormalization()(conv_2d_7)
    conv_2d_8 = MaxOutConv2D(batch_norm_7, 64, kernel_size=1, strides=1, padding="same")
    batch_norm_8 = BatchNormalization()(conv_2d_8)
    conv_2d_9 = MaxOutConv2D(batch_norm_8, 64, kernel_size=3, strides=1, padding="same")
    maxpool_9 = MaxPool2D(pool_size=(2, 2), strides=(2, 2))(conv_2d_9)
    flatten = Flatten()(maxpool_9)
    dense_10 = MaxOutDense(flatten, 160)
    batch_norm_10 = BatchNormalization()(dense_10)
    dropout_10 = Dropout(0.75)(batch_norm_10)
    output = Dense(n_label, activation="softmax")(dropout_10)
    return Model(inputs=input, outputs=output)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist", help="mnist or images:DIR")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--validation-split", type=float, default=0.2)
    p.add_argument("--shift", type=float, default=0.0, help="width/height shift range")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: TF's choice)")
    p.add_argument("--out", default=None, help="write the history as CSV here")
    a = p.parse_args()

    import tensorflow as tf
    import keras

    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    if a.seed is not None:
        keras.utils.set_random_seed(a.seed)

    if a.dataset == "mnist":
        x_train, y_train, x_test, y_test, n = load_mnist(a.data_dir)
        val = None
    elif a.dataset.startswith("images:"):
        x_train, y_train, x_va, y_va, x_test, y_test, n = load_folder(a.dataset[7:], a.validation_split)
        val = (x_va / 255, keras.utils.to_categorical(y_va, n))
    else:
        raise SystemExit(f"--dataset {a.dataset!r}: expected mnist or images:DIR")
    x_train = x_train / 255
    x_test = x_test / 255
    y_train = keras.utils.to_categorical(y_train, n)
    y_test = keras.utils.to_categorical(y_test, n)
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}; train {x_train.shape}, test {x_test.shape}",
          file=sys.stderr)

    lcnn = build_lcnn(x_train.shape[1:], n, keras)
    lcnn.compile(optimizer=keras.optimizers.Adam(learning_rate=a.lr), loss="categorical_crossentropy",
                 metrics=["accuracy"])
    es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=a.patience, verbose=1)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    start = time.perf_counter()
    fit = dict(epochs=a.epochs, batch_size=a.batch_size, callbacks=[es, Timer()], verbose=2)
    if a.shift or a.flip:
        from keras.preprocessing.image import ImageDataGenerator

        if val is None:  # Keras' validation_split: the last fraction, never augmented
            k = int(len(x_train) * (1 - a.validation_split))
            val = (x_train[k:], y_train[k:])
            x_train, y_train = x_train[:k], y_train[:k]
        gen = ImageDataGenerator(width_shift_range=a.shift, height_shift_range=a.shift, horizontal_flip=a.flip)
        del fit["batch_size"]
        history = lcnn.fit(gen.flow(x_train, y_train, batch_size=a.batch_size), validation_data=val, **fit)
    elif val is None:
        history = lcnn.fit(x_train, y_train, validation_split=a.validation_split, **fit)
    else:
        history = lcnn.fit(x_train, y_train, validation_data=val, **fit)
    wall = time.perf_counter() - start
    loss, acc = lcnn.evaluate(x_test, y_test, verbose=0)
    print(f"Accuracy : {acc * 100}")
    print(f"Loss : {loss}")
    print(f"epochs: {len(times)}, wall: {wall:.0f} s")
    if a.out:
        h = history.history
        with open(a.out + ".tmp", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"])
            for e in range(len(times)):
                w.writerow([e, h["loss"][e], h["accuracy"][e], h["val_loss"][e], h["val_accuracy"][e], times[e]])
            w.writerow(["test", loss, acc, "", "", wall])
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
