//! Winograd convolution, F(2x2, 3x3) and F(4x4, 3x3), for the engine's wide 3x3 stride-1
//! layers ([Lavin & Gray, arXiv:1509.09308](https://arxiv.org/abs/1509.09308)).
//!
//! Each `m x m` block of output pixels comes from an `a x a` input tile (`a = m + 2`) through
//! `a * a` products in a transformed space instead of `9 m^2` multiplies: F(2x2) makes 4
//! outputs from 16 products (2.25x fewer multiplies), F(4x4) 16 from 36 (4x fewer). In
//! channels-last the products summed over input channels are `a * a` matrix multiplies per
//! block of tiles, `M[e] = V[e] * U[e]` (tiles x cin times cin x cout), on the same [`sgemm`]
//! as the im2col path:
//! - `U = G g G^T`: the kernel, transformed once per call, `[a * a, cin, cout]`;
//! - `V = B^T d B`: each input tile, over whole channel rows, `[a * a, tiles, cin]`;
//! - `y = A^T M A`: each output block, over whole channel rows.
//!
//! The input gradient of such a layer is the same kind of convolution (the kernel turned by
//! 180 degrees, its channel axes swapped, the padding mirrored), so the backward pass uses it
//! too; the kernel gradient is `dU` (each tile of the input times each transformed output
//! gradient block) summed per chunk of images (F(4x4): per group, a few per batch), then
//! transformed back once.
//!
//! Used where it pays ([`eligible`]): both channel counts at least 32 and an output at least
//! 8x8, as in All-CNN-C, VGG16 and LCNN's `conv2` (and `conv3` on CIFAR-10's 8x8 maps; on
//! MNIST's 7x7 it keeps the im2col path, as do the 4x4 layers and the 5x5 `conv1`). F(4x4)
//! serves layers with at least 64 channels on both sides and outputs of 16x16 or more
//! (All-CNN-C's, VGG16's blocks 1-4, LightCNN-9's `conv3` to `conv5`), where the multiplies
//! dominate; F(2x2), whose transforms are only additions, the narrower or smaller ones
//! (LCNN's, VGG16's 9x9 `block5`). The rounding differs from a direct sum (tested against the
//! f64 definition); work is split over fixed chunks of images, so results do not depend on the
//! thread count.

use std::cell::RefCell;

use rayon::prelude::*;

use super::conv::{bias_gradient, reduce_parts, with_cols, ConvGeom, Partials};
use super::gemm::{sgemm, Mat};

/// Tiles transformed and multiplied at once: enough rows to amortize packing `U[e]`.
const TILE_BLOCK: usize = 256;

/// The narrowest channel count that takes the Winograd path: measured on LCNN's 32- and
/// 48-channel layers (`bench train-step --layers`, 1.4-1.5x faster forward and backward);
/// with fewer channels the transforms' passes over channel rows cost more than the multiplies
/// they save.
const MIN_CHANNELS: usize = 32;

/// The smallest output side that takes it: on smaller maps the tiles' edges waste work.
const MIN_SIDE: usize = 8;

/// F(4x4)'s kernel gradient is summed over this many groups of a batch's images, each on one
/// thread, then the groups' sums are added in order: a fixed count (not the thread count), so
/// that results do not depend on the machine, and a small one, since each sum is
/// `36 * cin * cout` values.
const KERNEL_GRADIENT_GROUPS: usize = 4;

/// The largest input tile side of the plans.
const MAX_A: usize = 6;

/// One Winograd algorithm F(m x m, 3x3): each `m x m` block of output pixels from an
/// `a x a` input tile (`a = m + 2`) through `a * a` products, with its transforms (row-major):
/// `B^T` (`a x a`, input), `G` (`a x 3`, kernel) and `A^T` (`m x a`, output).
#[derive(Debug)]
struct Plan {
    m: usize,
    bt: &'static [f32],
    g: &'static [f32],
    at: &'static [f32],
}

/// F(2x2, 3x3): 16 products for 4 outputs (2.25x fewer than 36 multiplies). Its transforms
/// are only additions and run written out (the `*_f2` functions, which every step of a plan
/// turns to when `m` is 2), so it needs no tables.
const F2: Plan = Plan {
    m: 2,
    bt: &[],
    g: &[],
    at: &[],
};

/// F(4x4, 3x3): 36 products for 16 outputs (4x fewer than 144 multiplies), points 0, 1, -1,
/// 2, -2 (Lavin & Gray's matrices).
const F4: Plan = Plan {
    m: 4,
    #[rustfmt::skip]
    bt: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    g: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    at: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

impl Plan {
    /// The plan for convolution `g`.
    fn for_geom(g: &ConvGeom) -> &'static Plan {
        if g.oh.min(g.ow) >= F4_MIN_SIDE && g.cin.min(g.cout) >= F4_MIN_CHANNELS {
            &F4
        } else {
            &F2
        }
    }

    /// Input tile side.
    fn a(&self) -> usize {
        self.m + 2
    }

    /// Products per tile.
    fn elems(&self) -> usize {
        self.a() * self.a()
    }

    /// Tiles per image.
    fn tiles(&self, g: &ConvGeom) -> usize {
        g.oh.div_ceil(self.m) * g.ow.div_ceil(self.m)
    }

    /// The image and the top-left output pixel of tile `tile` (counted from a chunk's first
    /// image).
    fn tile_origin(&self, g: &ConvGeom, tile: usize) -> (usize, usize, usize) {
        let (th, tw) = (g.oh.div_ceil(self.m), g.ow.div_ceil(self.m));
        let (img, p) = (tile / (th * tw), tile % (th * tw));
        (img, self.m * (p / tw), self.m * (p % tw))
    }
}

/// The smallest output side that takes F(4x4, 3x3) rather than F(2x2, 3x3)... On smaller
/// maps its 4x4 tiles overhang (VGG16's 9x9 `block5` on 12x12 of tiles) and a group's kernel
/// gradient is a sum over few tiles into a large transformed kernel: `block5` took 1.3x
/// longer on F(4x4), All-CNN-C's 16x16 layers 20-25% less.
const F4_MIN_SIDE: usize = 16;

/// ... and the narrowest channel count.
const F4_MIN_CHANNELS: usize = 64;

thread_local! {
    /// The transformed kernel, built on the calling thread and read by the workers.
    static KERNEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether convolution `g` (and its input gradient) takes the Winograd path.
pub fn eligible(g: &ConvGeom) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad_top <= 2
        && g.pad_left <= 2
        && g.cin.min(g.cout) >= MIN_CHANNELS
        && g.oh.min(g.ow) >= MIN_SIDE
}

/// The convolution whose output is the input gradient of `g`: its output gradient
/// convolved with the kernel turned by 180 degrees and its channel axes swapped
/// ([`flip_kernel`]), with the padding mirrored.
pub fn input_gradient_geom(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        h: g.oh,
        w: g.ow,
        cin: g.cout,
        k: 3,
        stride: 1,
        pad_top: 2 - g.pad_top,
        pad_left: 2 - g.pad_left,
        oh: g.h,
        ow: g.w,
        cout: g.cin,
    }
}

/// `w` (`[3, 3, cin, cout]`) turned by 180 degrees with its channel axes swapped, into `out`
/// (`[3, 3, cout, cin]`): the kernel of [`input_gradient_geom`].
pub fn flip_kernel(w: &[f32], cin: usize, cout: usize, out: &mut Vec<f32>) {
    out.resize(9 * cin * cout, 0.0);
    for tap in 0..9 {
        let src = &w[(8 - tap) * cin * cout..][..cin * cout];
        let dst = &mut out[tap * cin * cout..][..cin * cout];
        for (ci, row) in src.chunks_exact(cout).enumerate() {
            for (co, v) in row.iter().enumerate() {
                dst[co * cin + ci] = *v;
            }
        }
    }
}

/// `y = conv(x, w) + b` for `n` images, for any 3x3 stride-1 geometry with padding at most 2
/// (the [`eligible`] ones are where it is faster than the im2col path).
///
/// # Shapes
/// - `x`: `[n, h, w, cin]`, `w`: `[3, 3, cin, cout]`, `b`: `[cout]`
/// - `y`: `[n, oh, ow, cout]`
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    forward_with(Plan::for_geom(g), g, x, w, b, y);
}

/// [`forward`] with the given algorithm.
fn forward_with(plan: &Plan, g: &ConvGeom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    assert!(g.k == 3 && g.stride == 1 && g.pad_top <= 2 && g.pad_left <= 2);
    let chunk = g.chunk_images(x.len() / g.in_len());
    KERNEL.with(|u| {
        let mut u = u.borrow_mut();
        u.resize(plan.elems() * g.cin * g.cout, 0.0);
        transform_kernel(plan, w, g.cin, g.cout, &mut u);
        let u = &u[..];
        y.par_chunks_mut(chunk * g.out_len())
            .zip(x.par_chunks(chunk * g.in_len()))
            .for_each(|(yc, xc)| forward_chunk(plan, g, xc, u, b, yc));
    });
}

/// `U = G g G^T` for every channel pair: `[a * a, cin, cout]`, over whole rows of output
/// channels (F(2x2): its written-out form, whose rounding LCNN's results were made with).
fn transform_kernel(plan: &Plan, w: &[f32], cin: usize, cout: usize, u: &mut [f32]) {
    if plan.m == 2 {
        return transform_kernel_f2(w, cin, cout, u);
    }
    let (a, plane) = (plan.a(), cin * cout);
    let mut q = vec![0.0f32; 3 * a * cout];
    for ci in 0..cin {
        let g = |ky: usize, kx: usize| &w[(ky * 3 + kx) * plane + ci * cout..][..cout];
        // Rows: q = G g (a x 3), then columns: U = q G^T (a x a).
        for r in 0..a {
            for c in 0..3 {
                let out = &mut q[(r * 3 + c) * cout..][..cout];
                combine(out, plan.g[r * 3..][..3].iter().copied(), |k| g(k, c));
            }
        }
        for r in 0..a {
            for c in 0..a {
                let out = &mut u[(r * a + c) * plane + ci * cout..][..cout];
                combine(out, plan.g[c * 3..][..3].iter().copied(), |k| {
                    &q[(r * 3 + k) * cout..][..cout]
                });
            }
        }
    }
}

/// The images of one chunk, in blocks of [`TILE_BLOCK`] tiles.
fn forward_chunk(
    plan: &Plan,
    g: &ConvGeom,
    xc: &[f32],
    u: &[f32],
    b: Option<&[f32]>,
    yc: &mut [f32],
) {
    let (cin, cout, e) = (g.cin, g.cout, plan.elems());
    let tiles = xc.len() / g.in_len() * plan.tiles(g);
    let block = TILE_BLOCK.min(tiles);
    let len = e * block * (cin + cout) + e * cin.max(cout) + e * cin + cin;
    with_cols(len, |s| {
        let (v, rest) = s.split_at_mut(e * block * cin);
        let (m, rest) = rest.split_at_mut(e * block * cout);
        let (t, rest) = rest.split_at_mut(e * cin.max(cout));
        let (pad, zeros) = rest.split_at_mut(e * cin);
        zeros.fill(0.0);
        for t0 in (0..tiles).step_by(block) {
            let nb = block.min(tiles - t0);
            for i in 0..nb {
                input_tile(
                    plan,
                    g,
                    xc,
                    t0 + i,
                    pad,
                    zeros,
                    t,
                    &mut v[..e * nb * cin],
                    i,
                );
            }
            for k in 0..e {
                sgemm(
                    nb,
                    cout,
                    cin,
                    Mat::new(&v[k * nb * cin..][..nb * cin], cin),
                    Mat::new(&u[k * cin * cout..][..cin * cout], cout),
                    &mut m[k * nb * cout..][..nb * cout],
                    cout,
                    false,
                    1,
                );
            }
            for i in 0..nb {
                output_tile(plan, g, t0 + i, b, t, &m[..e * nb * cout], i, yc);
            }
        }
    });
}

/// Gradients of a convolution on the Winograd path: `dw` and `db` (overwritten), and `dx`
/// (overwritten) when given, as [`conv::backward`](super::conv::backward).
///
/// Each chunk (F(4x4): group) of images sums its transformed kernel gradient, `dU[e] = sum
/// over tiles of V[e]^T dM[e]` with `dM = A dy A^T` of each `m x m` block of the output
/// gradient; the sums are added in order and transformed back once, `dw = G^T dU G`.
///
/// # Shapes
/// - `x`: `[n, h, w, cin]`, `dy`: `[n, oh, ow, cout]`, `w`: `[3, 3, cin, cout]`
/// - `dw`: `[3, 3, cin, cout]`, `db`: `[cout]`, `dx`: `[n, h, w, cin]`
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
    parts: &mut Partials,
) {
    backward_with(Plan::for_geom(g), g, x, w, dy, dw, db, dx, parts);
}

/// [`backward`] with the given algorithm (the input gradient too).
#[allow(clippy::too_many_arguments)]
fn backward_with(
    plan: &Plan,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
    parts: &mut Partials,
) {
    let (cin, cout) = (g.cin, g.cout);
    if let Some(dx) = dx {
        flip_kernel(w, cin, cout, &mut parts.1);
        forward_with(plan, &input_gradient_geom(g), dy, &parts.1, None, dx);
    }
    let n = x.len() / g.in_len();
    // F(4x4): a few large groups of images, not the forward pass's small chunks, since each
    // group's sum is a transformed kernel 36 times the kernel's size, written once and read
    // back once by the reduction. F(2x2) keeps the chunks (and LCNN its results to the bit).
    let chunk = match plan.m {
        2 => g.chunk_images(n),
        _ => n.div_ceil(KERNEL_GRADIENT_GROUPS).max(1),
    };
    let e = plan.elems();
    let part_len = e * cin * cout + cout;
    parts.0.resize(n.div_ceil(chunk) * part_len, 0.0);
    parts
        .0
        .par_chunks_mut(part_len)
        .zip(x.par_chunks(chunk * g.in_len()))
        .zip(dy.par_chunks(chunk * g.out_len()))
        .for_each(|((part, xc), dyc)| {
            let (du, dbp) = part.split_at_mut(e * cin * cout);
            bias_gradient(dyc, dbp);
            kernel_gradient_transformed(plan, g, xc, dyc, du);
        });
    let du = &mut parts.1;
    du.resize(e * cin * cout, 0.0);
    reduce_parts(&parts.0, part_len, du, db);
    untransform_kernel_gradient(plan, du, cin, cout, dw);
}

/// `dU` (`[a * a, cin, cout]`, overwritten) of the images of one chunk.
fn kernel_gradient_transformed(plan: &Plan, g: &ConvGeom, xc: &[f32], dyc: &[f32], du: &mut [f32]) {
    let (cin, cout, e) = (g.cin, g.cout, plan.elems());
    let tiles = xc.len() / g.in_len() * plan.tiles(g);
    let block = TILE_BLOCK.min(tiles);
    let width = cin.max(cout);
    let len = e * block * (cin + cout) + e * width + e * cin + width;
    with_cols(len, |s| {
        let (v, rest) = s.split_at_mut(e * block * cin);
        let (dm, rest) = rest.split_at_mut(e * block * cout);
        let (t, rest) = rest.split_at_mut(e * width);
        let (pad, zeros) = rest.split_at_mut(e * cin);
        zeros.fill(0.0);
        for t0 in (0..tiles).step_by(block) {
            let nb = block.min(tiles - t0);
            for i in 0..nb {
                let tile = t0 + i;
                input_tile(plan, g, xc, tile, pad, zeros, t, &mut v[..e * nb * cin], i);
                let dmb = &mut dm[..e * nb * cout];
                output_gradient_tile(plan, g, dyc, tile, &zeros[..cout], t, dmb, i);
            }
            for k in 0..e {
                sgemm(
                    cin,
                    cout,
                    nb,
                    Mat::t(&v[k * nb * cin..][..nb * cin], cin),
                    Mat::new(&dm[k * nb * cout..][..nb * cout], cout),
                    &mut du[k * cin * cout..][..cin * cout],
                    cout,
                    t0 > 0,
                    1,
                );
            }
        }
    });
}

/// `dM = A dy A^T` of tile `tile`'s `m x m` block of the output gradient (zero beyond the
/// edges), over whole channel rows: element `e` goes to row `i` of `dm`'s `e`-th
/// `[tiles, cout]` matrix. `q` holds the `a x m` rows pass.
#[allow(clippy::too_many_arguments)]
fn output_gradient_tile(
    plan: &Plan,
    g: &ConvGeom,
    dyc: &[f32],
    tile: usize,
    zeros: &[f32],
    q: &mut [f32],
    dm: &mut [f32],
    i: usize,
) {
    if plan.m == 2 {
        return output_gradient_tile_f2(g, dyc, tile, zeros, q, dm, i);
    }
    let (cout, a, m) = (g.cout, plan.a(), plan.m);
    let nb = dm.len() / (plan.elems() * cout);
    let pixel = block_pixels(plan, g, dyc, tile, zeros);
    // Rows: q = A dy (a x m), `A = AT^T`.
    for c in 0..m {
        for r in 0..a {
            let out = &mut q[(r * m + c) * cout..][..cout];
            combine(out, (0..m).map(|k| plan.at[k * a + r]), |k| pixel(k, c));
        }
    }
    // Columns: dM = q A^T (a x a).
    for r in 0..a {
        for c in 0..a {
            let out = &mut dm[((r * a + c) * nb + i) * cout..][..cout];
            combine(out, (0..m).map(|k| plan.at[k * a + c]), |k| {
                &q[(r * m + k) * cout..][..cout]
            });
        }
    }
}

/// Pixel `(r, c)` of tile `tile`'s output block in `dyc` (its `cout` channels), or `zeros`
/// beyond the output's edges: an edge tile's pixels there contribute nothing.
fn block_pixels<'a>(
    plan: &Plan,
    g: &ConvGeom,
    dyc: &'a [f32],
    tile: usize,
    zeros: &'a [f32],
) -> impl Fn(usize, usize) -> &'a [f32] {
    let (img, oy0, ox0) = plan.tile_origin(g, tile);
    let (oh, ow, cout) = (g.oh, g.ow, g.cout);
    let dyi = &dyc[img * g.out_len()..][..g.out_len()];
    move |r, c| {
        let (oy, ox) = (oy0 + r, ox0 + c);
        if oy < oh && ox < ow {
            &dyi[(oy * ow + ox) * cout..][..cout]
        } else {
            zeros
        }
    }
}

/// `dw = G^T dU G` for every channel pair (the adjoint of [`transform_kernel`]), over whole
/// rows of output channels.
fn untransform_kernel_gradient(plan: &Plan, du: &[f32], cin: usize, cout: usize, dw: &mut [f32]) {
    if plan.m == 2 {
        return untransform_kernel_gradient_f2(du, cin, cout, dw);
    }
    let (a, plane) = (plan.a(), cin * cout);
    let mut p = vec![0.0f32; 3 * a * cout];
    for ci in 0..cin {
        let d = |r: usize, c: usize| &du[(r * a + c) * plane + ci * cout..][..cout];
        // Rows: p = G^T dU (3 x a), then columns: dw = p G (3 x 3).
        for ky in 0..3 {
            for c in 0..a {
                let out = &mut p[(ky * a + c) * cout..][..cout];
                combine(out, (0..a).map(|k| plan.g[k * 3 + ky]), |k| d(k, c));
            }
        }
        for ky in 0..3 {
            for kx in 0..3 {
                let out = &mut dw[(ky * 3 + kx) * plane + ci * cout..][..cout];
                combine(out, (0..a).map(|k| plan.g[k * 3 + kx]), |k| {
                    &p[(ky * a + k) * cout..][..cout]
                });
            }
        }
    }
}

/// `V = B^T d B` of tile `tile` (its `a x a` input pixels, zero beyond the edges and in the
/// padding), over channel rows: element `e` goes to row `i` of `v`'s `e`-th `[tiles, cin]`
/// matrix. The rows pass runs over whole rows of `a` pixels (contiguous in channels-last),
/// read in place inside the image and from a zero-padded copy in `pad` at its edges; `t`
/// holds its result.
#[allow(clippy::too_many_arguments)]
fn input_tile(
    plan: &Plan,
    g: &ConvGeom,
    xc: &[f32],
    tile: usize,
    pad: &mut [f32],
    zeros: &[f32],
    t: &mut [f32],
    v: &mut [f32],
    i: usize,
) {
    if plan.m == 2 {
        return input_tile_f2(g, xc, tile, &zeros[..g.cin], t, v, i);
    }
    let (cin, a) = (g.cin, plan.a());
    let nb = v.len() / (plan.elems() * cin);
    let (img, oy, ox) = plan.tile_origin(g, tile);
    let (y0, x0) = (
        oy as isize - g.pad_top as isize,
        ox as isize - g.pad_left as isize,
    );
    let xi = &xc[img * g.in_len()..][..g.in_len()];
    let inside = y0 >= 0 && x0 >= 0 && y0 as usize + a <= g.h && x0 as usize + a <= g.w;
    let row_len = a * cin;
    if !inside {
        for r in 0..a {
            let dst = &mut pad[r * row_len..][..row_len];
            dst.fill(0.0);
            let iy = y0 + r as isize;
            if iy < 0 || iy >= g.h as isize {
                continue;
            }
            let c0 = (-x0).max(0) as usize;
            let c1 = (g.w as isize - x0).clamp(0, a as isize) as usize;
            if c0 < c1 {
                let src = (iy as usize * g.w) as isize + x0 + c0 as isize;
                let src = &xi[src as usize * cin..][..(c1 - c0) * cin];
                dst[c0 * cin..c1 * cin].copy_from_slice(src);
            }
        }
    }
    let pad = &*pad;
    let d = |r: usize| -> &[f32] {
        if inside {
            let start = ((y0 as usize + r) * g.w + x0 as usize) * cin;
            &xi[start..][..row_len]
        } else {
            &pad[r * row_len..][..row_len]
        }
    };
    // Rows: t = B^T d (a x a), a whole row of pixels at a time.
    for r in 0..a {
        let out = &mut t[r * row_len..][..row_len];
        combine(out, plan.bt[r * a..][..a].iter().copied(), d);
    }
    // Columns: V = t B.
    for r in 0..a {
        for c in 0..a {
            let out = &mut v[((r * a + c) * nb + i) * cin..][..cin];
            combine(out, plan.bt[c * a..][..a].iter().copied(), |k| {
                &t[(r * a + k) * cin..][..cin]
            });
        }
    }
}

/// `y = A^T M A + b` of tile `tile` into the output pixels it covers (`mt`: row `i` of each of
/// the `a * a` `[tiles, cout]` matrices), over whole channel rows; `s` holds the rows pass.
#[allow(clippy::too_many_arguments)]
fn output_tile(
    plan: &Plan,
    g: &ConvGeom,
    tile: usize,
    b: Option<&[f32]>,
    s: &mut [f32],
    mt: &[f32],
    i: usize,
    yc: &mut [f32],
) {
    if plan.m == 2 {
        return output_tile_f2(g, tile, b, s, mt, i, yc);
    }
    let (cout, a, m) = (g.cout, plan.a(), plan.m);
    let nb = mt.len() / (plan.elems() * cout);
    let me = |r: usize, c: usize| &mt[((r * a + c) * nb + i) * cout..][..cout];
    let (img, oy0, ox0) = plan.tile_origin(g, tile);
    // Rows: s = A^T M (m x a).
    for c in 0..a {
        for r in 0..m {
            let out = &mut s[(r * a + c) * cout..][..cout];
            combine(out, plan.at[r * a..][..a].iter().copied(), |k| me(k, c));
        }
    }
    // Columns: y = s A (m x m), plus the bias.
    let yi = &mut yc[img * g.out_len()..][..g.out_len()];
    for r in 0..m.min(g.oh - oy0) {
        for c in 0..m.min(g.ow - ox0) {
            let dst = &mut yi[((oy0 + r) * g.ow + ox0 + c) * cout..][..cout];
            combine(dst, plan.at[c * a..][..a].iter().copied(), |k| {
                &s[(r * a + k) * cout..][..cout]
            });
            if let Some(b) = b {
                for (d, b) in dst.iter_mut().zip(b) {
                    *d += b;
                }
            }
        }
    }
}

/// `out = sum over k of coefs[k] * row(k)`, whole channel rows at a time, skipping zero
/// coefficients (most of the transforms' are); up to four rows in one pass over `out`.
fn combine<'a>(
    out: &mut [f32],
    coefs: impl Iterator<Item = f32>,
    row: impl Fn(usize) -> &'a [f32],
) {
    let mut terms: [(f32, &[f32]); MAX_A] = [(0.0, &[]); MAX_A];
    let mut n = 0;
    for (k, c) in coefs.enumerate() {
        if c != 0.0 {
            terms[n] = (c, row(k));
            n += 1;
        }
    }
    let len = out.len();
    let t = |k: usize| (terms[k].0, &terms[k].1[..len]);
    match n {
        0 => out.fill(0.0),
        1 => {
            let (c0, r0) = t(0);
            for (o, a) in out.iter_mut().zip(r0) {
                *o = c0 * a;
            }
        }
        2 => {
            let ((c0, r0), (c1, r1)) = (t(0), t(1));
            for ((o, a), b) in out.iter_mut().zip(r0).zip(r1) {
                *o = c0 * a + c1 * b;
            }
        }
        3 => {
            let ((c0, r0), (c1, r1), (c2, r2)) = (t(0), t(1), t(2));
            for (((o, a), b), c) in out.iter_mut().zip(r0).zip(r1).zip(r2) {
                *o = c0 * a + c1 * b + c2 * c;
            }
        }
        _ => {
            let ((c0, r0), (c1, r1), (c2, r2), (c3, r3)) = (t(0), t(1), t(2), t(3));
            for ((((o, a), b), c), d) in out.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
                *o = c0 * a + c1 * b + c2 * c + c3 * d;
            }
            for k in 4..n {
                let (ck, rk) = t(k);
                for (o, a) in out.iter_mut().zip(rk) {
                    *o += ck * a;
                }
            }
        }
    }
}

// F(2x2, 3x3)'s tile transforms written out (additions and subtractions of channel rows):
// LCNN's 32- and 48-channel layers spend a large share of their step in them, where
// [`combine`]'s general form costs 4-7% of the step.

/// `dM = A dy A^T` of tile `tile`'s 2x2 block of the output gradient (zero beyond the edges),
/// `A^T = [1 1 1 0; 0 1 -1 -1]`, over whole channel rows: element `e` goes to row `i` of
/// `dm`'s `e`-th `[tiles, cout]` matrix. `q` holds the 4x2 rows pass.
fn output_gradient_tile_f2(
    g: &ConvGeom,
    dyc: &[f32],
    tile: usize,
    zeros: &[f32],
    q: &mut [f32],
    dm: &mut [f32],
    i: usize,
) {
    let cout = g.cout;
    let nb = dm.len() / (16 * cout);
    let pixel = block_pixels(&F2, g, dyc, tile, zeros);
    // Rows: q = A dy (4x2), row a at q[2a + c].
    for c in 0..2 {
        let (d0, d1) = (pixel(0, c), pixel(1, c));
        q[c * cout..][..cout].copy_from_slice(d0);
        add(&mut q[(2 + c) * cout..][..cout], d0, d1);
        sub(&mut q[(4 + c) * cout..][..cout], d0, d1);
        sub(&mut q[(6 + c) * cout..][..cout], zeros, d1);
    }
    // Columns: dM = q A^T (4x4).
    for a in 0..4 {
        let (q0, q1) = (&q[2 * a * cout..][..cout], &q[(2 * a + 1) * cout..][..cout]);
        let at = |b: usize| ((4 * a + b) * nb + i) * cout;
        dm[at(0)..][..cout].copy_from_slice(q0);
        add(&mut dm[at(1)..][..cout], q0, q1);
        sub(&mut dm[at(2)..][..cout], q0, q1);
        sub(&mut dm[at(3)..][..cout], zeros, q1);
    }
}

/// `U[e] = (G g G^T)[e]` for every channel pair, `G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]`.
fn transform_kernel_f2(w: &[f32], cin: usize, cout: usize, u: &mut [f32]) {
    let plane = cin * cout;
    for ci in 0..cin {
        let tap = |t: usize| &w[t * plane + ci * cout..][..cout];
        let g: [&[f32]; 9] = std::array::from_fn(tap);
        for co in 0..cout {
            // Rows: q = G g (4x3), then columns: U = q G^T (4x4).
            let cols: [[f32; 4]; 3] = std::array::from_fn(|c| {
                let (g0, g1, g2) = (g[c][co], g[3 + c][co], g[6 + c][co]);
                [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
            });
            for r in 0..4 {
                let q: [f32; 3] = std::array::from_fn(|c| cols[c][r]);
                let row = [
                    q[0],
                    0.5 * (q[0] + q[1] + q[2]),
                    0.5 * (q[0] - q[1] + q[2]),
                    q[2],
                ];
                for (c, v) in row.into_iter().enumerate() {
                    u[(r * 4 + c) * plane + ci * cout + co] = v;
                }
            }
        }
    }
}

/// `dw = G^T dU G` for every channel pair (the adjoint of [`transform_kernel_f2`]).
fn untransform_kernel_gradient_f2(du: &[f32], cin: usize, cout: usize, dw: &mut [f32]) {
    let plane = cin * cout;
    for ci in 0..cin {
        for co in 0..cout {
            let d = |e: usize| du[e * plane + ci * cout + co];
            // Rows: p = G^T dU (3x4), then columns: dw = p G (3x3).
            let cols: [[f32; 3]; 4] = std::array::from_fn(|c| {
                let (d0, d1, d2, d3) = (d(c), d(4 + c), d(8 + c), d(12 + c));
                [d0 + 0.5 * (d1 + d2), 0.5 * (d1 - d2), 0.5 * (d1 + d2) + d3]
            });
            for ky in 0..3 {
                let p: [f32; 4] = std::array::from_fn(|c| cols[c][ky]);
                let row = [
                    p[0] + 0.5 * (p[1] + p[2]),
                    0.5 * (p[1] - p[2]),
                    0.5 * (p[1] + p[2]) + p[3],
                ];
                for (kx, v) in row.into_iter().enumerate() {
                    dw[(ky * 3 + kx) * plane + ci * cout + co] = v;
                }
            }
        }
    }
}

/// `V = B^T d B` of tile `tile`, `B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`, over whole
/// channel rows: element `e` goes to row `i` of `v`'s `e`-th `[tiles, cin]` matrix.
fn input_tile_f2(
    g: &ConvGeom,
    xc: &[f32],
    tile: usize,
    zeros: &[f32],
    t: &mut [f32],
    v: &mut [f32],
    i: usize,
) {
    let cin = g.cin;
    let nb = v.len() / (16 * cin);
    let (img, oy, ox) = F2.tile_origin(g, tile);
    let (y0, x0) = (
        oy as isize - g.pad_top as isize,
        ox as isize - g.pad_left as isize,
    );
    let xi = &xc[img * g.in_len()..][..g.in_len()];
    let d = |r: usize, c: usize| -> &[f32] {
        let (iy, ix) = (y0 + r as isize, x0 + c as isize);
        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
            zeros
        } else {
            &xi[(iy as usize * g.w + ix as usize) * cin..][..cin]
        }
    };
    // Rows: t = B^T d, row r of the tile at t[4r + c].
    for c in 0..4 {
        let (d0, d1, d2, d3) = (d(0, c), d(1, c), d(2, c), d(3, c));
        sub(&mut t[c * cin..][..cin], d0, d2);
        add(&mut t[(4 + c) * cin..][..cin], d1, d2);
        sub(&mut t[(8 + c) * cin..][..cin], d2, d1);
        sub(&mut t[(12 + c) * cin..][..cin], d1, d3);
    }
    // Columns: V = t B.
    for r in 0..4 {
        let row = |c: usize| &t[(4 * r + c) * cin..][..cin];
        let at = |c: usize| ((4 * r + c) * nb + i) * cin;
        sub(&mut v[at(0)..][..cin], row(0), row(2));
        add(&mut v[at(1)..][..cin], row(1), row(2));
        sub(&mut v[at(2)..][..cin], row(2), row(1));
        sub(&mut v[at(3)..][..cin], row(1), row(3));
    }
}

/// `y = A^T M A + b` of tile `tile` into the output pixels it covers (`m`: row `i` of each of
/// the 16 `[tiles, cout]` matrices), `A^T = [1 1 1 0; 0 1 -1 -1]`, over whole channel rows.
fn output_tile_f2(
    g: &ConvGeom,
    tile: usize,
    b: Option<&[f32]>,
    s: &mut [f32],
    m: &[f32],
    i: usize,
    yc: &mut [f32],
) {
    let cout = g.cout;
    let nb = m.len() / (16 * cout);
    let me = |e: usize| &m[(e * nb + i) * cout..][..cout];
    let (img, oy0, ox0) = F2.tile_origin(g, tile);
    // Rows: s = A^T M (2x4), row r at s[4r + c].
    for c in 0..4 {
        let (m0, m1, m2, m3) = (me(c), me(4 + c), me(8 + c), me(12 + c));
        sum3(&mut s[c * cout..][..cout], m0, m1, m2, 1.0);
        sum3(&mut s[(4 + c) * cout..][..cout], m1, m2, m3, -1.0);
    }
    // Columns: y = s A (2x2), plus the bias.
    let yi = &mut yc[img * g.out_len()..][..g.out_len()];
    for r in 0..2.min(g.oh - oy0) {
        let row = |c: usize| &s[(4 * r + c) * cout..][..cout];
        for c in 0..2.min(g.ow - ox0) {
            let dst = &mut yi[((oy0 + r) * g.ow + ox0 + c) * cout..][..cout];
            if c == 0 {
                sum3(dst, row(0), row(1), row(2), 1.0);
            } else {
                sum3(dst, row(1), row(2), row(3), -1.0);
            }
            if let Some(b) = b {
                for (d, b) in dst.iter_mut().zip(b) {
                    *d += b;
                }
            }
        }
    }
}

/// `out = a + b + c` (`sign` 1) or `a - b - c` (`sign` -1).
fn sum3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], sign: f32) {
    debug_assert!(a.len() == out.len() && b.len() == out.len() && c.len() == out.len());
    for (((o, a), b), c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = a + sign * (b + c);
    }
}

fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    debug_assert!(a.len() == out.len() && b.len() == out.len());
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

fn sub(out: &mut [f32], a: &[f32], b: &[f32]) {
    debug_assert!(a.len() == out.len() && b.len() == out.len());
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::conv::tests::{geom, naive, values};
    use crate::layers::Padding;

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * scale + 1e-6,
                "{what}[{i}]: {x} vs {y} (scale {scale})"
            );
        }
    }

    /// Every 3x3 stride-1 geometry, eligible or not: odd and even sides (partial tiles at the
    /// edges), `same` and `valid` padding, one channel, blocks of tiles split across images.
    #[test]
    fn forward_matches_the_f64_definition() {
        for (h, w, c, p, o, n) in [
            (9, 7, 3, Padding::Same, 5, 3),
            (8, 8, 4, Padding::Valid, 6, 2),
            (5, 6, 1, Padding::Same, 2, 4),
            (3, 3, 2, Padding::Same, 3, 1),
            (40, 30, 3, Padding::Same, 4, 2),
            (9, 9, 64, Padding::Same, 64, 2),
            (10, 10, 64, Padding::Valid, 72, 2),
            (16, 16, 32, Padding::Same, 96, 2),
            (8, 8, 48, Padding::Same, 128, 3),
        ] {
            let g = geom(h, w, c, 3, 1, p, o);
            let x = values(n * g.in_len(), 11);
            let k = values(9 * c * o, 12);
            let b = values(o, 13);
            for plan in [&F2, &F4] {
                let mut y = vec![f32::NAN; n * g.out_len()];
                forward_with(plan, &g, &x, &k, Some(&b), &mut y);
                close(
                    &y,
                    &naive(&g, &x, &k, &b),
                    &format!("F({0}x{0}) {g:?}", plan.m),
                );
            }
        }
    }

    /// `dw[ky, kx, c, o] = sum x[iy, ix, c] dy[oy, ox, o]` and
    /// `dx[iy, ix, c] = sum dy[oy, ox, o] w[ky, kx, c, o]`, in f64.
    pub fn definition_gradients(g: &ConvGeom, x: &[f32], k: &[f32], dy: &[f32]) -> [Vec<f32>; 2] {
        let (c, o, n) = (g.cin, g.cout, x.len() / g.in_len());
        let (mut dw, mut dx) = (vec![0.0f64; k.len()], vec![0.0f64; x.len()]);
        for i in 0..n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let d = &dy[i * g.out_len() + (oy * g.ow + ox) * o..][..o];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (oy + ky) as isize - g.pad_top as isize;
                            let ix = (ox + kx) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            let xi = i * g.in_len() + (iy as usize * g.w + ix as usize) * c;
                            for ci in 0..c {
                                let kk = ((ky * 3 + kx) * c + ci) * o;
                                for co in 0..o {
                                    dw[kk + co] += x[xi + ci] as f64 * d[co] as f64;
                                    dx[xi + ci] += k[kk + co] as f64 * d[co] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        [dw, dx].map(|v| v.into_iter().map(|v| v as f32).collect())
    }

    /// Every gradient against its definition: the input gradient as a convolution of the
    /// output gradient with the flipped kernel, the kernel gradient summed over tiles in
    /// several blocks (the 40x30 case has 600 tiles), over edge tiles and over groups of
    /// images (five images: chunks or groups of two, the last of one).
    #[test]
    fn gradients_match_the_definition() {
        for (h, w, c, p, o, n) in [
            (9, 7, 3, Padding::Same, 5, 2),
            (8, 8, 4, Padding::Valid, 6, 2),
            (6, 5, 2, Padding::Valid, 3, 3),
            (40, 30, 3, Padding::Same, 4, 2),
            (8, 8, 5, Padding::Same, 7, 5),
        ] {
            let g = geom(h, w, c, 3, 1, p, o);
            let x = values(n * g.in_len(), 20);
            let k = values(9 * c * o, 21);
            let dy = values(n * g.out_len(), 22);
            let [want_dw, want_dx] = definition_gradients(&g, &x, &k, &dy);
            let want_db: Vec<f32> = (0..o).map(|j| dy.iter().skip(j).step_by(o).sum()).collect();
            for plan in [&F2, &F4] {
                let (mut dw, mut db, mut dx) = (
                    vec![f32::NAN; k.len()],
                    vec![f32::NAN; o],
                    vec![f32::NAN; x.len()],
                );
                let mut parts = Partials::default();
                backward_with(
                    plan,
                    &g,
                    &x,
                    &k,
                    &dy,
                    &mut dw,
                    Some(&mut db),
                    Some(&mut dx),
                    &mut parts,
                );
                let what = |t: &str| format!("{t} F({0}x{0}) {g:?}", plan.m);
                close(&dx, &want_dx, &what("dx"));
                close(&db, &want_db, &what("db"));
                close(&dw, &want_dw, &what("dw"));
            }
        }
    }

    #[test]
    fn eligibility_keeps_narrow_and_small_layers_on_im2col() {
        // All-CNN-C's 96- and 192-channel layers, VGG16's, LCNN's conv2 and conv3 (CIFAR-10
        // and MNIST sizes), not LCNN's conv1 (3 channels) or its 4x4 layers.
        assert!(eligible(&geom(32, 32, 96, 3, 1, Padding::Same, 96)));
        assert!(eligible(&geom(8, 8, 192, 3, 1, Padding::Same, 192)));
        assert!(eligible(&geom(150, 150, 64, 3, 1, Padding::Same, 64)));
        assert!(eligible(&geom(16, 16, 32, 3, 1, Padding::Same, 96)));
        assert!(eligible(&geom(8, 8, 48, 3, 1, Padding::Same, 128)));
        assert!(eligible(&geom(14, 14, 32, 3, 1, Padding::Same, 96)));
        assert!(!eligible(&geom(7, 7, 48, 3, 1, Padding::Same, 128)));
        assert!(!eligible(&geom(32, 32, 3, 3, 1, Padding::Same, 96)));
        assert!(!eligible(&geom(16, 16, 16, 3, 1, Padding::Same, 96)));
        assert!(!eligible(&geom(4, 4, 64, 3, 1, Padding::Same, 64)));
        assert!(!eligible(&geom(32, 32, 96, 3, 2, Padding::Same, 96)));
        assert!(!eligible(&geom(32, 32, 96, 5, 1, Padding::Same, 96)));
        // F(4x4) for the 64-channel and wider layers (All-CNN-C's, VGG16's), F(2x2) for
        // LCNN's (32 or 48 input channels after Max-Feature-Map).
        let m = |h, c, o| Plan::for_geom(&geom(h, h, c, 3, 1, Padding::Same, o)).m;
        assert_eq!(m(32, 96, 96), 4);
        assert_eq!(m(16, 192, 192), 4);
        assert_eq!(m(9, 512, 512), 2);
        assert_eq!(m(150, 64, 64), 4);
        assert_eq!(m(14, 32, 96), 2);
        assert_eq!(m(8, 48, 128), 2);
    }
}
