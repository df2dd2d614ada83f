#!/usr/bin/env python3
"""Log-power spectrogram features of an utterance (librosa-style), re-implemented in numpy.

Writes crates/lcnn/tests/fixtures/audio_features.json and two 16-bit PCM WAV files,
crates/lcnn/tests/fixtures/audio_tone16k.wav and audio_stereo22k.wav (stdlib `wave`).
Everything is float64.

Decoding.  16-bit PCM little-endian, x = sample / 32768.0.  Stereo is mixed to mono as the
mean of the channels, (left + right) / 2, after the division.

Features (config keys as in the fixture: sample_rate, pre_emphasis, n_fft, win_length,
hop_length, bins, top_db, frames, deltas).  Steps 2-5 are librosa's
    S = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                     window='blackman', center=True, pad_mode='constant')
    S_db = librosa.power_to_db(np.abs(S) ** 2, ref=np.max, amin=1e-10, top_db=top_db)
(librosa 0.11 core/spectrum.py `stft`, `power_to_db`; filters.get_window; util.pad_center):
    https://github.com/librosa/librosa/blob/main/librosa/core/spectrum.py
 1. Pre-emphasis: y[0] = x[0];  y[n] = x[n] - pre_emphasis * x[n-1].
    (= scipy.signal.lfilter([1, -coef], [1], x) with zero initial state, i.e.
    librosa.effects.preemphasis(x, coef=coef, zi=0.0).  librosa's DEFAULT zi is
    2*x[0] - x[1], which changes y[0]; not used here.)
 2. Window: periodic ("DFT-even") Blackman of length N = win_length,
        w[n] = 0.42 - 0.5 * cos(2*pi*n/N) + 0.08 * cos(4*pi*n/N),   n = 0 .. N-1
    evaluated left to right in that order (so w[0] = -1.3877787807814457e-17, not 0).  This is
    scipy.signal.get_window('blackman', N, fftbins=True) (what librosa's window='blackman'
    gives) and np.blackman(N + 1)[:-1], both up to rounding (they evaluate the cosines at other
    arguments; they agree with this formula to ~1e-16).  It is zero-padded into n_fft samples
    with (n_fft - win_length) // 2 zeros on the left (librosa.util.pad_center), the rest on
    the right.
 3. Framing, center=True with pad_mode='constant': pad y with n_fft // 2 zeros on both sides;
    F = 1 + len(y) // hop_length frames; frame t is padded[t*hop_length : t*hop_length + n_fft].
 4. Power: P[f, t] = |rfft(frame_t * window)[f]|^2, f = 0 .. n_fft/2 (n_fft is even here).
 5. dB relative to the maximum over the WHOLE spectrogram (all n_fft/2+1 bins, all F frames):
        S = 10 * log10(max(P, 1e-10)) - 10 * log10(max(1e-10, P.max()))
        if top_db is not None: S = max(S, S.max() - top_db)
    (S.max() is 0 whenever P.max() > 1e-10, so the floor is -top_db.)
 6. Keep the K = bins lowest bins, rows 0 .. K-1.
 7. Fixed length T = frames: if F >= T, keep frames 0 .. T-1; otherwise tile along time and
    cut, frame t = S[:, t mod F].
 8. If deltas: HTK regression, N = 2, on the K x T features of step 7, edges replicated:
        d[:, t] = (1 * (c[:, min(t+1, T-1)] - c[:, max(t-1, 0)])
                 + 2 * (c[:, min(t+2, T-1)] - c[:, max(t-2, 0)])) / 10
    (10 = 2 * (1^2 + 2^2)), and delta-delta = the same formula applied to d.  Channels
    [static, delta, delta-delta].  This is librosa.feature.delta(c, width=5, order=1,
    mode='nearest') applied once and twice (a Savitzky-Golay first derivative of a degree-1
    fit over 5 points is exactly the regression above); librosa's default mode='interp' and
    its order=2 (a degree-2 fit) are different things.
 Output: a channels-last image [K][T][C] (bin = row, bin 0 first; time = column; C = 3 with
 deltas, else 1), stored flat in that row-major order.

Signals (no numpy RNG anywhere; the WAVs are committed and the JSON records what they hold):
  audio_tone16k.wav: 16000 Hz mono, 1600 samples (0.1 s),
      v[n] = 0.3 * sin(2*pi*440*n/16000) + 0.15 * sin(2*pi*3000*n/16000) + 0.02 * (2*u_n - 1)
      u_n = s_{n+1} / 2^32, s_0 = 12345, s_{k+1} = (1664525 * s_k + 1013904223) mod 2^32
      sample[n] = clip(rint(v[n] * 32768), -32768, 32767)
  audio_stereo22k.wav: 22050 Hz stereo, 2205 frames (0.1 s = exactly 100 cycles of 1000 Hz),
      left = 0.4 * sin(2*pi*1000*n/22050), right = 0.2 * sin(2*pi*1000*n/22050), each
      quantised as above; the mono mix is a 1000 Hz sine of amplitude 0.3 (plus quantisation).

Self-checks: the WAV round trip; the window against np.blackman(N+1)[:-1] (1e-15); framing by
an explicit loop against a strided view; the rfft power of every frame against a naive DFT
(a double loop for one frame, a DFT matrix for all, rtol 1e-12 of P.max()); the dB values'
sensitivity to that difference; the deltas against an explicit loop; and that three wrong
variants (a symmetric window np.blackman(N), dB relative to each frame's own maximum, no
centre padding) each differ from the fixture by far more than the comparison tolerance.
Cross-checks when importable (they never change the fixture): scipy.signal.get_window
('blackman', N) for the window and lfilter for the pre-emphasis; librosa.stft +
librosa.power_to_db for steps 2-6 (and the wrong variants fail against librosa too) and
librosa.feature.delta for step 8.  Checked with librosa 0.11.0, scipy 1.17.1, numpy 2.4.6:
    python3 -m venv /tmp/librosavenv && /tmp/librosavenv/bin/pip install numpy librosa
    /tmp/librosavenv/bin/python reference/audio_features.py

Features are stored rounded to 9 significant digits (the fixture budget); everything else in
full float64.  The dB values move by < 1e-9 for a relative change of 1e-12 in P, so a float64
Rust implementation should match the stored features to ~1e-6 absolute.
"""

import hashlib
import io
import math
import os
import sys
import wave

import numpy as np

from _common import FIXTURE_DIR, write_fixture

AMIN = 1e-10
DB_TOL = 1e-7          # comparison tolerance (absolute, dB) used by the checks below
TONE_RATE, TONE_LEN = 16000, 1600
STEREO_RATE, STEREO_LEN = 22050, 2205

# ---------------------------------------------------------------------------------------------
# Signals and WAV I/O
# ---------------------------------------------------------------------------------------------


def lcg_uniform(n, seed=12345):
    """u_k = s_{k+1} / 2^32 with s_{k+1} = (1664525 s_k + 1013904223) mod 2^32 (Numerical Recipes)."""
    out, s = [], seed
    for _ in range(n):
        s = (1664525 * s + 1013904223) % (1 << 32)
        out.append(s / 4294967296.0)
    return np.array(out, dtype=np.float64)


def quantize(v):
    return np.clip(np.rint(np.asarray(v) * 32768.0), -32768, 32767).astype(np.int16)


def tone_samples():
    n = np.arange(TONE_LEN, dtype=np.float64)
    v = (0.3 * np.sin(2 * np.pi * 440.0 * n / TONE_RATE)
         + 0.15 * np.sin(2 * np.pi * 3000.0 * n / TONE_RATE)
         + 0.02 * (2.0 * lcg_uniform(TONE_LEN) - 1.0))
    return quantize(v)[:, None]


def stereo_samples():
    n = np.arange(STEREO_LEN, dtype=np.float64)
    s = np.sin(2 * np.pi * 1000.0 * n / STEREO_RATE)
    return np.stack([quantize(0.4 * s), quantize(0.2 * s)], axis=1)


def wav_bytes(samples, rate):
    """samples: int16 [frames, channels] -> the bytes of a 16-bit PCM little-endian WAV."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def read_wav(data):
    """-> (rate, channels, int16 [frames, channels])."""
    with wave.open(io.BytesIO(data), "rb") as w:
        assert w.getsampwidth() == 2 and w.getcomptype() == "NONE"
        ch, rate, nframes = w.getnchannels(), w.getframerate(), w.getnframes()
        raw = w.readframes(nframes)
    return rate, ch, np.frombuffer(raw, dtype="<i2").reshape(nframes, ch)


def decode_mono(samples):
    """int16 [frames, channels] -> float64 mono: sample / 32768, then the mean of the channels."""
    x = samples.astype(np.float64) / 32768.0
    return x[:, 0].copy() if x.shape[1] == 1 else x.mean(axis=1)


# ---------------------------------------------------------------------------------------------
# The features (a plain transcription of the docstring)
# ---------------------------------------------------------------------------------------------


def pre_emphasis(x, coef):
    y = np.empty_like(x)
    y[0] = x[0]
    for n in range(1, len(x)):
        y[n] = x[n] - coef * x[n - 1]
    return y


def blackman_periodic(N):
    n = np.arange(N, dtype=np.float64)
    return 0.42 - 0.5 * np.cos(2 * np.pi * n / N) + 0.08 * np.cos(4 * np.pi * n / N)


def padded_window(n_fft, win_length, window_fn=blackman_periodic):
    w = np.zeros(n_fft)
    lpad = (n_fft - win_length) // 2
    w[lpad:lpad + win_length] = window_fn(win_length)
    return w


def frames_of(y, n_fft, hop):
    padded = np.concatenate([np.zeros(n_fft // 2), y, np.zeros(n_fft // 2)])
    F = 1 + len(y) // hop
    return np.stack([padded[t * hop:t * hop + n_fft] for t in range(F)])   # [F, n_fft]


def power_spectrogram(y, n_fft, win_length, hop, window_fn=blackman_periodic):
    fr = frames_of(y, n_fft, hop) * padded_window(n_fft, win_length, window_fn)
    return (np.abs(np.fft.rfft(fr, axis=1)) ** 2).T                      # [n_fft/2+1, F]


def cqt_power(y, sr, hop, bins, fmin, bins_per_octave):
    """Brown's (1991) direct constant-Q transform, power [bins, F]: bin k at
    f_k = fmin 2^(k/B), Q = 1/(2^(1/B) - 1), N_k = ceil(Q sr / f_k) samples of a periodic Hann
    window, X_k(t) = (1/N_k) sum_n y[t hop - N_k//2 + n] w[n] exp(-2 pi i f_k n / sr), zero
    outside the signal; F = 1 + len // hop (centred frames, as the STFT's)."""
    F = 1 + len(y) // hop
    Q = 1.0 / (2.0 ** (1.0 / bins_per_octave) - 1.0)
    P = np.zeros((bins, F))
    for k in range(bins):
        f = fmin * 2.0 ** (k / bins_per_octave)
        N = max(1, int(math.ceil(Q * sr / f)))
        n = np.arange(N)
        kern = (0.5 - 0.5 * np.cos(2 * np.pi * n / N)) / N * np.exp(-2j * np.pi * f * n / sr)
        ypad = np.concatenate([np.zeros(N), y, np.zeros(N)])
        starts = np.arange(F) * hop - N // 2 + N                 # + N: the padding
        frames = ypad[starts[:, None] + n[None, :]]              # [F, N]
        P[k] = np.abs(frames @ kern) ** 2
    return P


def power_to_db(P, top_db):
    S = 10.0 * np.log10(np.maximum(P, AMIN)) - 10.0 * np.log10(max(AMIN, P.max()))
    if top_db is not None:
        S = np.maximum(S, S.max() - top_db)
    return S


def fix_length(S, T):
    F = S.shape[1]
    return S[:, :T] if F >= T else S[:, [t % F for t in range(T)]]


def delta(c):
    T = c.shape[1]
    d = np.empty_like(c)
    for t in range(T):
        d[:, t] = (1.0 * (c[:, min(t + 1, T - 1)] - c[:, max(t - 1, 0)])
                   + 2.0 * (c[:, min(t + 2, T - 1)] - c[:, max(t - 2, 0)])) / 10.0
    return d


def features(x, cfg, window_fn=blackman_periodic, db_fn=power_to_db):
    y = pre_emphasis(x, cfg["pre_emphasis"])
    if cfg["cqt"]:
        P = cqt_power(y, cfg["sample_rate"], cfg["hop_length"], cfg["bins"], cfg["fmin"],
                      cfg["bins_per_octave"])
    else:
        P = power_spectrogram(y, cfg["n_fft"], cfg["win_length"], cfg["hop_length"], window_fn)
    S_full = db_fn(P, cfg["top_db"])
    c = fix_length(S_full[:cfg["bins"]], cfg["frames"])
    chans = [c]
    if cfg["deltas"]:
        d = delta(c)
        chans += [d, delta(d)]
    return {"y": y, "P": P, "S_full": S_full, "features": np.stack(chans, axis=-1)}  # [K, T, C]


# ---------------------------------------------------------------------------------------------
# Wrong variants (to show the checks discriminate)
# ---------------------------------------------------------------------------------------------


def blackman_symmetric(N):
    return np.blackman(N)


def db_per_frame_max(P, top_db):
    S = 10.0 * np.log10(np.maximum(P, AMIN)) - 10.0 * np.log10(np.maximum(AMIN, P.max(axis=0)))
    if top_db is not None:
        S = np.maximum(S, S.max() - top_db)
    return S


def power_no_centre(y, n_fft, win_length, hop, window_fn=blackman_periodic):
    F = 1 + len(y) // hop            # same frame count, but frames start at the signal's start
    padded = np.concatenate([y, np.zeros(n_fft)])
    fr = np.stack([padded[t * hop:t * hop + n_fft] for t in range(F)])
    fr = fr * padded_window(n_fft, win_length, window_fn)
    return (np.abs(np.fft.rfft(fr, axis=1)) ** 2).T


def wrong_variants(x, cfg):
    yield "symmetric window np.blackman(N)", features(x, cfg, window_fn=blackman_symmetric)
    yield "dB relative to each frame's max", features(x, cfg, db_fn=db_per_frame_max)
    y = pre_emphasis(x, cfg["pre_emphasis"])
    S = power_to_db(power_no_centre(y, cfg["n_fft"], cfg["win_length"], cfg["hop_length"]),
                    cfg["top_db"])
    yield "center=False framing", {"S_full": S,
                                   "features": fix_length(S[:cfg["bins"]], cfg["frames"])}


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def config(n_fft, win_length, hop_length, bins, top_db, frames, deltas):
    return {"sample_rate": TONE_RATE, "pre_emphasis": 0.97, "n_fft": n_fft,
            "win_length": win_length, "hop_length": hop_length, "bins": bins, "top_db": top_db,
            "frames": frames, "deltas": deltas, "cqt": False, "fmin": 32.70319566257483,
            "bins_per_octave": 12}


def case_configs():
    f_c = 1 + TONE_LEN // 40
    return [
        ("A_repeat", "F = 101 < frames = 120: frames 101..119 repeat frames 0..18",
         config(64, 48, 16, 20, 80.0, 120, False)),
        ("B_crop_deltas", "F = 51 > frames = 20: frames 0..19 kept; no top_db clamp; "
         "channels [static, delta, delta-delta]",
         config(64, 64, 32, 33, None, 20, True)),
        ("C_exact_clamp", "frames = F = 41; top_db 30 clamps part of the spectrogram at -30 dB",
         config(128, 100, 40, 16, 30.0, f_c, False)),
    ]


def r9(a):
    return [float(f"{v:.9g}") for v in np.asarray(a, dtype=np.float64).ravel()]


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def max_abs(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def self_check(x, runs):
    # Window: periodic Blackman = np.blackman(N + 1)[:-1]; pad_center offset.
    for N in (48, 64, 100, 7):
        assert max_abs(blackman_periodic(N), np.blackman(N + 1)[:-1]) < 1e-15, N
    w = padded_window(64, 48)
    assert (w[:8] == 0).all() and (w[56:] == 0).all() and abs(w[8 + 24] - 1.0) < 1e-15
    # Pre-emphasis by its definition.
    y = pre_emphasis(x, 0.97)
    assert y[0] == x[0] and y[5] == x[5] - 0.97 * x[4]
    for name, cfg, r in runs:
        n_fft, hop = cfg["n_fft"], cfg["hop_length"]
        F = r["P"].shape[1]
        assert F == 1 + len(x) // hop
        # Framing: the list comprehension against a strided view of the padded signal.
        padded = np.pad(r["y"], n_fft // 2)
        view = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:F]
        assert (view == frames_of(r["y"], n_fft, hop)).all(), name
        win = padded_window(n_fft, cfg["win_length"])
        fr = view * win
        # One frame by a naive DFT double loop.
        t = min(3, F - 1)
        naive = []
        for f in range(n_fft // 2 + 1):
            re = sum(fr[t, n] * math.cos(2 * math.pi * f * n / n_fft) for n in range(n_fft))
            im = -sum(fr[t, n] * math.sin(2 * math.pi * f * n / n_fft) for n in range(n_fft))
            naive.append(re * re + im * im)
        pmax = r["P"].max()
        assert max_abs(naive, r["P"][:, t]) < 1e-12 * pmax, name
        # All frames by a DFT matrix; the dB values' sensitivity to that difference.
        k = np.arange(n_fft // 2 + 1)[:, None] * np.arange(n_fft)[None, :]
        Pm = np.abs(np.exp(-2j * np.pi * k / n_fft) @ fr.T) ** 2
        assert max_abs(Pm, r["P"]) < 1e-12 * pmax, name
        Sm = power_to_db(Pm, cfg["top_db"])
        assert max_abs(Sm, r["S_full"]) < 1e-9, (name, max_abs(Sm, r["S_full"]))
        # Fixed length and deltas.
        feat = r["features"]
        T = cfg["frames"]
        for tt in (0, T - 1, min(F, T - 1)):
            assert (feat[:, tt, 0] == r["S_full"][:cfg["bins"], tt % F]).all()
        if cfg["deltas"]:
            c = feat[:, :, 0]
            d = np.zeros_like(c)
            for row in range(c.shape[0]):
                for tt in range(T):
                    acc = 0.0
                    for n in (1, 2):
                        acc += n * (c[row, min(tt + n, T - 1)] - c[row, max(tt - n, 0)])
                    d[row, tt] = acc / (2 * (1 ** 2 + 2 ** 2))
            assert max_abs(d, feat[:, :, 1]) < 1e-12
            assert max_abs(delta(d), feat[:, :, 2]) < 1e-12
        # The wrong variants are caught.
        for label, wr in wrong_variants(x, cfg):
            diff = max_abs(wr["features"], feat[:, :, :wr["features"].shape[-1]]
                           if wr["features"].ndim == 3 else feat[:, :, 0])
            assert diff > 100 * DB_TOL, (name, label, diff)
            print(f"  self-check {name}: wrong variant '{label}' differs by {diff:.3g} dB "
                  f"(caught)", file=sys.stderr)


def scipy_check(x):
    try:
        import scipy
        import scipy.signal
    except ImportError:
        return None
    for N in (48, 64, 100):
        got = scipy.signal.get_window("blackman", N)       # fftbins=True: periodic
        if max_abs(got, blackman_periodic(N)) > 1e-15:
            raise SystemExit(f"window {N}: scipy get_window('blackman') differs")
        if max_abs(scipy.signal.get_window("blackman", N, fftbins=False), blackman_periodic(N)) < 1e-3:
            raise SystemExit("the symmetric window should differ")
    got = scipy.signal.lfilter([1.0, -0.97], [1.0], x)
    if max_abs(got, pre_emphasis(x, 0.97)) > 1e-15:
        raise SystemExit("pre-emphasis differs from scipy.signal.lfilter")
    return f"scipy {scipy.__version__}"


def librosa_check(x, runs):
    try:
        import librosa
    except ImportError:
        return None
    y_l = librosa.effects.preemphasis(x, coef=0.97, zi=0.0)
    if max_abs(y_l, pre_emphasis(x, 0.97)) > 1e-15:
        raise SystemExit("pre-emphasis differs from librosa.effects.preemphasis(zi=0)")

    def lib_db(cfg, y):
        S = librosa.stft(y, n_fft=cfg["n_fft"], hop_length=cfg["hop_length"],
                         win_length=cfg["win_length"], window="blackman", center=True,
                         pad_mode="constant")
        P = np.abs(S) ** 2
        return P, librosa.power_to_db(P, ref=np.max, amin=AMIN, top_db=cfg["top_db"])

    for name, cfg, r in runs:
        P, S = lib_db(cfg, r["y"])
        if P.shape != r["P"].shape or max_abs(P, r["P"]) > 1e-12 * P.max():
            raise SystemExit(f"{name}: librosa power differs")
        d = max_abs(S, r["S_full"])
        if d > DB_TOL:
            raise SystemExit(f"{name}: librosa power_to_db differs by {d}")
        K, T = cfg["bins"], cfg["frames"]
        ref = fix_length(S[:K], T)
        if max_abs(ref, r["features"][:, :, 0]) > DB_TOL:
            raise SystemExit(f"{name}: librosa static features differ")
        if cfg["deltas"]:
            d1 = librosa.feature.delta(ref, width=5, order=1, mode="nearest")
            d2 = librosa.feature.delta(d1, width=5, order=1, mode="nearest")
            if max_abs(d1, r["features"][:, :, 1]) > 1e-9 or max_abs(d2, r["features"][:, :, 2]) > 1e-9:
                raise SystemExit(f"{name}: librosa.feature.delta(mode='nearest') differs")
            interp = librosa.feature.delta(ref, width=5, order=1)
            print(f"  librosa {name}: delta(mode='interp', librosa's default) would differ by "
                  f"{max_abs(interp, r['features'][:, :, 1]):.3g}", file=sys.stderr)
        for label, wr in wrong_variants(x, cfg):
            diff = max_abs(fix_length(wr["S_full"][:K], T), ref)
            if diff <= 100 * DB_TOL:
                raise SystemExit(f"{name}: wrong variant {label} not caught")
            print(f"  librosa {name}: wrong variant '{label}' differs from librosa by "
                  f"{diff:.3g} dB (caught)", file=sys.stderr)
        print(f"  librosa {name}: power rel diff {max_abs(P, r['P']) / P.max():.2g}, "
              f"dB diff {d:.2g}", file=sys.stderr)
    return f"librosa {librosa.__version__}"


# ---------------------------------------------------------------------------------------------


def case_entry(name, note, cfg, r):
    P, S_full, feat = r["P"], r["S_full"], r["features"]
    K, T, C = feat.shape
    F = P.shape[1]
    probe = 1
    c = {
        "name": name,
        "note": note,
        "config": cfg,
        "window_offset": (cfg["n_fft"] - cfg["win_length"]) // 2,
        "window_sum": float(padded_window(cfg["n_fft"], cfg["win_length"]).sum()),
        "num_frames": F,
        "power_max": float(P.max()),
        "power_argmax": [int(i) for i in np.unravel_index(np.argmax(P), P.shape)],
        "power_probe": {"frame": probe, "power": P[:, probe]},
        "db_min": float(S_full.min()),
        "clamped_count": (int((S_full == S_full.max() - cfg["top_db"]).sum())
                          if cfg["top_db"] is not None else 0),
        "shape": [K, T, C],
        "features_sum": float(feat.sum()),
        "features": r9(feat),
    }
    if name.startswith("A"):
        c["window"] = padded_window(cfg["n_fft"], cfg["win_length"])
    return c


def cqt_self_check(x, cfg, r):
    """The vectorized CQT against a scalar double loop for a few bins and frames, the tone's
    strongest bin (3 kHz after pre-emphasis, 6 log2(15) = 23.4 bins above 200 Hz), and a wrong
    variant (frames starting at t hop instead of centred) that the fixture's tolerance catches."""
    y, P = r["y"], r["P"]
    sr, hop, B = cfg["sample_rate"], cfg["hop_length"], cfg["bins_per_octave"]
    Q = 1.0 / (2.0 ** (1.0 / B) - 1.0)
    for k, t in ((0, 0), (17, 20), (23, 40), (10, 3)):
        f = cfg["fmin"] * 2.0 ** (k / B)
        N = int(math.ceil(Q * sr / f))
        re = im = 0.0
        for n in range(N):
            i = t * hop - N // 2 + n
            if 0 <= i < len(y):
                w = (0.5 - 0.5 * math.cos(2 * math.pi * n / N)) / N
                re += y[i] * w * math.cos(2 * math.pi * f * n / sr)
                im -= y[i] * w * math.sin(2 * math.pi * f * n / sr)
        assert abs(re * re + im * im - P[k, t]) <= 1e-12 * P.max(), (k, t)
    mid = P.shape[1] // 2
    assert int(np.argmax(P[:, mid])) == 23, int(np.argmax(P[:, mid]))
    shifted = np.roll(np.pad(y, (0, 4 * hop)), -2 * hop)[: len(y)]
    wrong = power_to_db(cqt_power(shifted, sr, hop, cfg["bins"], cfg["fmin"], B), cfg["top_db"])
    d = max_abs(wrong, r["S_full"])
    assert d > 1.0, d
    print(f"  self-check cqt: scalar loop agrees; peak bin 23; a shifted framing differs by {d:.3g} dB (caught)",
          file=sys.stderr)


def main():
    tone_wav = wav_bytes(tone_samples(), TONE_RATE)
    stereo_wav = wav_bytes(stereo_samples(), STEREO_RATE)

    rate, ch, s = read_wav(tone_wav)
    assert (rate, ch, s.shape) == (TONE_RATE, 1, (TONE_LEN, 1)) and (s == tone_samples()).all()
    x = decode_mono(s)
    srate, sch, ss = read_wav(stereo_wav)
    assert (srate, sch, ss.shape) == (STEREO_RATE, 2, (STEREO_LEN, 2))
    mono = decode_mono(ss)
    assert mono[7] == (ss[7, 0] / 32768.0 + ss[7, 1] / 32768.0) / 2

    runs = []
    for name, note, cfg in case_configs():
        runs.append((name, cfg, features(x, cfg)))
    self_check(x, runs)
    for label, r in (("scipy", scipy_check(x)), ("librosa", librosa_check(x, runs))):
        print(f"{label} cross-check: " + (f"passed against {r}" if r else "skipped (not importable)"),
              file=sys.stderr)

    cases = [case_entry(name, note, cfg, r)
             for (name, note, cfg), (_, _, r) in zip(case_configs(), runs)]
    # The constant-Q case, kept out of `runs` (whose checks and librosa cross-check are the
    # STFT's): bins from 200 Hz to 2.9 kHz, frames cropped.
    cq = dict(config(64, 64, 40, 24, 80.0, 12, False), cqt=True, fmin=200.0, bins_per_octave=6)
    rq = features(x, cq)
    cqt_self_check(x, cq, rq)
    cases.append(case_entry("D_cqt", "constant-Q transform (Brown's direct form): 24 bins "
                            "from 200 Hz, 6 per octave; F = 41 > frames = 12", cq, rq))

    n = np.arange(STEREO_LEN)
    X = np.fft.rfft(mono)
    peak = int(np.argmax(np.abs(X)))
    assert peak == 100
    # Least-squares amplitude of the 1000 Hz component of the mono mix.
    basis = np.stack([np.sin(2 * np.pi * 1000 * n / STEREO_RATE),
                      np.cos(2 * np.pi * 1000 * n / STEREO_RATE)], axis=1)
    coef = np.linalg.lstsq(basis, mono, rcond=None)[0]
    amp = float(np.hypot(*coef))
    assert abs(amp - 0.3) < 1e-4, amp

    payload = {
        "description": "Log-power spectrogram features (librosa-style: pre-emphasis, periodic "
                       "Blackman window padded to n_fft, centred zero-padded STFT, power_to_db "
                       "ref=max amin=1e-10 top_db over the whole spectrogram, lowest `bins` "
                       "bins, tiled or cropped to `frames`, optional HTK deltas N=2 with "
                       "replicated edges), float64. features: flat row-major [bins][frames]"
                       "[channels] (bin 0 first; channels [static, delta, delta-delta] or "
                       "[static]), rounded to 9 significant digits; everything else full "
                       "float64. See reference/audio_features.py",
        "tone_wav": {
            "file": "audio_tone16k.wav",
            "md5": hashlib.md5(tone_wav).hexdigest(),
            "bytes": len(tone_wav),
            "sample_rate": TONE_RATE,
            "channels": 1,
            "frames": TONE_LEN,
            "decoded_len": len(x),
            "decoded_first_8": x[:8],
            "decoded_sum": float(x.sum()),
            "int16_first_8": s[:8, 0].astype(int),
            "pre_emphasis": 0.97,
            "pre_emphasized_first_16": pre_emphasis(x, 0.97)[:16],
        },
        "stereo_wav": {
            "file": "audio_stereo22k.wav",
            "md5": hashlib.md5(stereo_wav).hexdigest(),
            "bytes": len(stereo_wav),
            "sample_rate": STEREO_RATE,
            "channels": 2,
            "frames": STEREO_LEN,
            "tone_hz": 1000.0,
            "left_amplitude": 0.4,
            "right_amplitude": 0.2,
            "mono_amplitude": 0.3,
            "mono_amplitude_fit": amp,
            "mono_first_8": mono[:8],
            "left_int16_first_4": ss[:4, 0].astype(int),
            "right_int16_first_4": ss[:4, 1].astype(int),
            "mono_rfft_peak_bin": peak,
            "note": "mono = (left/32768 + right/32768) / 2; 2205 samples are exactly 100 cycles, "
                    "so the peak of the 2205-point rfft of the mono mix is bin 100 = 1000 Hz",
        },
        "cases": cases,
    }
    write_fixture("audio_features.json", payload)
    for fname, data in (("audio_tone16k.wav", tone_wav), ("audio_stereo22k.wav", stereo_wav)):
        path = os.path.normpath(os.path.join(FIXTURE_DIR, fname))
        with open(path, "wb") as f:
            f.write(data)
        print(f"wrote {path} ({len(data)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
