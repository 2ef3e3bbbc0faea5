"""Vectorised rendering of chest radiographs for a chunk of studies.

The image is 1 - exp(-k * attenuation), a sum of attenuations (soft tissue, bone, the air of
the lungs removed, fluid, metal) evaluated on a (B, S, S) grid of body coordinates, so dense
structures come out bright and aerated lung dark, as on a radiograph. Body coordinates run
from -1 to 1 across the image, x towards the image's right (the patient's left on frontal
views), y down. Findings are placed in lung-local coordinates: u = -1 at a lung's medial wall,
+1 at its lateral wall (posterior on a lateral view); v = -1 at the apex, +1 at the
costophrenic angle. Each finding is computed only for the studies that have it.

A subgroup shift (`shifted`: a mask of studies) draws those studies' findings more subtly:
smaller (severity scaled by SHIFT_SIZE, the heart's excess over a cardiothoracic ratio of 0.5
likewise) and fainter (each finding's attenuation scaled by SHIFT_CONTRAST). It changes pixels
only: the studies' labels and reports are written from the unshifted draw, and the random
streams are the same, so unshifted studies render exactly as without the shift.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from radfm_jax.data.builders.synthetic_cxr.studies import (
    AP,
    BILATERAL,
    LATERAL,
    LEFT,
    RIGHT,
    SEXES,
    F,
    Studies,
)

_F32 = np.float32
SHIFT_SIZE = 0.35  # severity multiplier of a shifted study's findings (extent, size)
SHIFT_CONTRAST = 0.5  # attenuation multiplier of a shifted study's findings


def _col(a) -> np.ndarray:
    """Per-study values as (B, 1, 1) float32 so they broadcast over the pixel grid."""
    return np.asarray(a, _F32)[:, None, None]


def _edge(signed: np.ndarray, width) -> np.ndarray:
    """Anti-aliased inside-ness from a signed distance (positive inside), linear over `width`."""
    return np.clip(signed / width + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, b: int, cells: int, size: int) -> np.ndarray:
    """Unit Gaussian noise on a cells x cells lattice, bilinearly upsampled to (B, S, S)."""
    pos = np.clip((np.arange(size) + 0.5) / size * (cells - 1), 0, cells - 1 - 1e-6)
    lo = pos.astype(int)
    frac = (pos - lo).astype(_F32)
    interp = np.zeros((size, cells), _F32)
    interp[np.arange(size), lo] = 1 - frac
    interp[np.arange(size), lo + 1] += frac
    lattice = rng.standard_normal((b, cells, cells)).astype(_F32)
    # Bilinear interpolation shrinks the variance; rescale so the field is roughly unit.
    return interp @ lattice @ interp.T * _F32(1.5)


def _dist(x, y, x0, y0):
    return np.sqrt((x - x0) ** 2 + (y - y0) ** 2)


def _segment_distance(x, y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return _dist(x, y, x0 + t * dx, y0 + t * dy)


class _Grid:
    """The pixel grid in each study's body coordinates (rotated, shifted, zoomed)."""

    def __init__(self, st: Studies, size: int):
        self.size = size
        self.px = 2.0 / size  # one pixel in normalised units
        g = ((np.arange(size) + 0.5) / size * 2 - 1).astype(_F32)
        self.cos, self.sin = np.cos(st.rotation), np.sin(st.rotation)
        self.dx, self.dy, self.zoom = st.shift[:, 0], st.shift[:, 1], st.zoom
        c, s, z = _col(self.cos), _col(self.sin), _col(self.zoom)
        ox, oy = g[None, None, :] - _col(self.dx), g[None, :, None] - _col(self.dy)
        self.x = (c * ox + s * oy) / z
        self.y = (c * oy - s * ox) / z

    def to_pixels(self, study: np.ndarray, x: np.ndarray, y: np.ndarray):
        """Body coordinates of points of the given studies -> fractional pixel (column, row)."""
        c, s, z = self.cos[study, None], self.sin[study, None], self.zoom[study, None]
        gx = self.dx[study, None] + z * (c * x - s * y)
        gy = self.dy[study, None] + z * (s * x + c * y)
        return (gx + 1) / self.px - 0.5, (gy + 1) / self.px - 0.5


class _Lungs:
    """Lung shapes and lung-local coordinates; a lateral view has one lung for both sides."""

    def __init__(self, st: Studies, grid: _Grid, lateral: bool):
        tw, lh = st.thorax, st.lung_height
        self.n = len(tw)
        if lateral:
            self.sign = {RIGHT: 1.0, LEFT: 1.0}
            self.inner = {RIGHT: -0.6 * tw, LEFT: -0.6 * tw}  # anterior wall (behind sternum)
            self.width = {RIGHT: 1.12 * tw, LEFT: 1.12 * tw}
        else:
            self.sign = {RIGHT: -1.0, LEFT: 1.0}
            self.inner = {RIGHT: 0.04 * tw, LEFT: 0.05 * tw}
            self.width = {RIGHT: 0.64 * tw, LEFT: 0.61 * tw}
        # The right hemidiaphragm sits higher (the liver).
        self.top = {RIGHT: -0.78 * lh, LEFT: -0.79 * lh}
        self.bottom = {RIGHT: 0.6 * lh, LEFT: 0.64 * lh}
        self.u, self.v, self.raw, self.dome_y = {}, {}, {}, {}
        for side in (RIGHT, LEFT) if not lateral else (RIGHT,):
            cy = _col((self.top[side] + self.bottom[side]) / 2)
            half_h = _col((self.bottom[side] - self.top[side]) / 2)
            v = (grid.y - cy) / half_h
            # Narrow at the apex, widest at the base; the medial wall stays straight.
            w = _col(self.width[side]) * (0.6 + 0.4 * np.sqrt(np.clip((v + 1) * 0.5, 0, 1)))
            u = 2 * (self.sign[side] * grid.x - _col(self.inner[side])) / w - 1
            apex = -1 + 0.45 * (u - 0.1) ** 2
            # Domed diaphragm, lowest at the lateral costophrenic angle.
            dome = 1 - 0.26 * (1 - np.minimum(u * u, 1))
            pu, pv = grid.px * 2 / w, grid.px / half_h
            self.raw[side] = _edge(1 - np.abs(u), 1.5 * pu) * _edge(v - apex, 1.5 * pv) * _edge(dome - v, 1.5 * pv)
            self.u[side], self.v[side] = u, v
            self.dome_y[side] = cy + half_h * dome
        if lateral:
            for d in (self.u, self.v, self.raw, self.dome_y):
                d[LEFT] = d[RIGHT]

    def to_body(self, study: np.ndarray, side: np.ndarray, uv: np.ndarray):
        """Lung-local points, one per study on the given side -> body coordinates."""
        def pick(d):
            return np.where(side == LEFT, np.broadcast_to(d[LEFT], self.n)[study],
                            np.broadcast_to(d[RIGHT], self.n)[study])
        u, v = uv[:, 0], uv[:, 1]
        top, bottom = pick(self.top), pick(self.bottom)
        y = (top + bottom) / 2 + v * (bottom - top) / 2
        w = pick(self.width) * (0.6 + 0.4 * np.sqrt(np.clip((v + 1) * 0.5, 0, 1)))
        x = pick(self.sign) * (pick(self.inner) + (u + 1) * w / 2)
        return x, y


def _sides(side: np.ndarray, has: np.ndarray) -> dict[int, np.ndarray]:
    """Per lung side, the studies carrying the finding there (bilateral counts for both)."""
    return {RIGHT: np.nonzero(has & ((side == RIGHT) | (side == BILATERAL)))[0],
            LEFT: np.nonzero(has & ((side == LEFT) | (side == BILATERAL)))[0]}


def _heart_geometry(st: Studies, lungs: _Lungs, lateral: bool):
    """Heart centre, half-width and half-height per study: width = CTR x thoracic width."""
    if lateral:
        hw = st.ctr * 0.62 * st.thorax
        hx = -0.6 * st.thorax + hw * 0.95
    else:
        thoracic = lungs.inner[RIGHT] + lungs.width[RIGHT] + lungs.inner[LEFT] + lungs.width[LEFT]
        hw = st.ctr * np.where(st.view == AP, 1.04, 1.0) * thoracic / 2
        hx = hw / 3  # a third of the heart lies right of the midline, two thirds left
    hh = 0.62 * hw + 0.06
    top, bottom = lungs.top[LEFT], lungs.bottom[LEFT]
    hy = (top + bottom) / 2 + 0.45 * (bottom - top) / 2
    return hx, hy, hw, hh


def _anatomy(st: Studies, grid: _Grid, lungs: _Lungs, lateral: bool):
    """Normal anatomy: returns (attenuation, aerated lung per side)."""
    x, y, px = grid.x, grid.y, grid.px
    tw = _col(st.thorax)
    ax = np.abs(x)
    # Soft tissue: the chest, widening into the shoulders and arms at the top of the film.
    half = (0.84 if lateral else 0.97) * tw + 0.5 * np.clip((-0.5 - y) / 0.3, 0, 1)
    body = _edge(half - ax, px * 2)
    thick = 0.7 + 0.4 * np.sqrt(np.clip(1 - (x / (0.97 * tw)) ** 2, 0, 1))
    atten = 0.5 * _col(st.habitus) * body * thick
    hx, hy, hw, hh = (_col(a) for a in _heart_geometry(st, lungs, lateral))
    heart = _edge(1 - np.sqrt(((x - hx) / hw) ** 2 + ((y - hy) / hh) ** 2), px * 1.5 / hw)
    # Liver and spleen under the hemidiaphragms are as dense as the heart.
    abdomen = body * _edge(y - np.where(x < 0, lungs.dome_y[RIGHT], lungs.dome_y[LEFT]), px * 2)
    if lateral:
        hide = 0.5 * heart
        # Spine (posterior, with vertebral bodies), sternum, and arms raised over the apices.
        vert = 0.7 + 0.3 * np.clip(np.cos(2 * np.pi * y / 0.12) * 3, -1, 1)
        atten += 0.35 * _edge(0.09 - np.abs(x - 0.6 * tw), px * 1.5) * vert
        atten += 0.25 * _edge(0.03 - np.abs(x + 0.64 * tw), px) * _edge(0.38 - np.abs(y + 0.2), px)
        atten += 0.2 * body * _edge(-0.55 - y, 0.15)
    else:
        # Mediastinum: a central column above the heart, the aortic knob bulging left.
        knob = 0.05 * np.exp(-(((y + 0.38) / 0.07) ** 2)) * (x > 0)
        medi = _edge(0.16 * tw + knob - np.abs(x - 0.01), px * 1.5) * _edge(hy - y, 0.1)
        hide = np.maximum(heart, medi)
        atten += 0.3 * np.maximum(medi - np.maximum(heart, abdomen), 0)
        # Trachea, spine, clavicles, humeral heads.
        atten -= 0.25 * _edge(0.032 * tw - ax, px) * _edge(-0.3 - y, 0.05)
        vert = 0.8 + 0.2 * np.cos(2 * np.pi * y / 0.11)
        atten += 0.12 * _edge(0.065 * tw - ax, px * 1.5) * vert
        for sgn in (-1.0, 1.0):
            d = _segment_distance(x, y, sgn * 0.06, -0.74, sgn * 0.6 * tw, -0.9)
            atten += 0.28 * _edge(0.034 - d, px)
            atten += 0.3 * _edge(0.14 - _dist(x, y, sgn * 0.97 * tw, -0.86), px * 1.5)
        # Breast shadows over the lower lateral chest (women).
        female = _col(st.sex == 0)
        for sgn in (-1.0, 1.0):
            rb = ((x - sgn * 0.5 * tw) / 0.32) ** 2 + ((y - 0.45) / 0.24) ** 2
            atten += 0.12 * female * np.sqrt(np.clip(1 - rb, 0, 1))
    # Heart and upper abdomen merge into one water-density silhouette (no double counting).
    atten += 0.45 * np.maximum(heart, abdomen)
    aerated = {side: lungs.raw[side] * (1 - hide) for side in (RIGHT, LEFT)}
    air = aerated[RIGHT] if lateral else aerated[RIGHT] + aerated[LEFT]
    atten -= 0.45 * air * _col(st.habitus)
    # Ribs: posterior ribs rise from the spine then arc down; anterior ribs slope down medially.
    if lateral:
        phase, cage = (y - 0.25 * x) / 0.13, _edge(0.75 * tw - ax, 0.05)
    else:
        phase, cage = (y - 0.45 * ax + 1.1 * ax * ax) / 0.14, _edge(0.8 * tw - ax, 0.05)
    ribs = np.clip((np.cos(2 * np.pi * phase) - 0.45) * 2.5, 0, 1)
    ribs += 0.5 * np.clip((np.cos(2 * np.pi * (y + 0.35 * ax) / 0.17) - 0.6) * 2.5, 0, 1)
    atten += 0.07 * ribs * cage * _edge(0.6 - np.abs(y + 0.15), 0.1)
    return atten, aerated


def _markings(st: Studies, grid: _Grid, lungs: _Lungs, aerated, rng: np.random.Generator, lateral: bool):
    """Vessels: ridged noise (bright where a noise field crosses zero) densest at the hila."""
    b, size = len(st.view), grid.size
    coarse = _smooth_noise(rng, b, max(size // 8, 6), size)
    fine = _smooth_noise(rng, b, max(size // 4, 10), size)
    vessels = np.clip(1 - 2.5 * np.abs(coarse), 0, 1) + 0.6 * np.clip(1 - 3 * np.abs(fine), 0, 1)
    out = np.zeros_like(grid.x)
    for side in (RIGHT,) if lateral else (RIGHT, LEFT):
        hilum_x = lungs.sign[side] * (lungs.inner[side] + 0.12 * lungs.width[side])
        hilum_y = 0.1 * lungs.top[side] - 0.08
        r = _dist(grid.x, grid.y, _col(hilum_x), _col(hilum_y))
        out += aerated[side] * (0.35 + np.exp(-r / 0.3))
    return out * (0.2 + vessels)


def _gain(gain: np.ndarray | None, idx: np.ndarray):
    """The per-study finding contrast of the studies idx as (n, 1, 1), or 1 without a shift."""
    return 1.0 if gain is None else _col(gain[idx])


def _effusion(st: Studies, lungs: _Lungs, atten: np.ndarray, gain=None) -> None:
    has = st.present[:, F["pleural_effusion"]]
    level = 0.06 + 0.55 * st.severity[:, F["pleural_effusion"]]  # fraction of lung height
    fluid = {}
    for side, idx in _sides(st.effusion_side, has).items():
        if len(idx):
            u, v = lungs.u[side][idx], lungs.v[side][idx]
            # Meniscus: the fluid climbs higher along the lateral chest wall.
            top = 1 - 2 * _col(level[idx]) * (0.65 + 0.6 * np.clip((u + 1) * 0.5, 0, 1) ** 2)
            fluid[side] = (idx, lungs.raw[side][idx] * np.clip((v - top) / 0.18, 0, 1) * _gain(gain, idx))
    for side, (idx, f) in fluid.items():
        if lungs.raw[LEFT] is lungs.raw[RIGHT] and side == LEFT and RIGHT in fluid:
            # Lateral view: one lung; a bilateral effusion must not be counted twice.
            both = np.intersect1d(idx, fluid[RIGHT][0])
            f = f * (1 - np.isin(idx, both)[:, None, None])
        atten[idx] += 0.55 * f


def _pneumothorax(st: Studies, grid: _Grid, lungs: _Lungs, aerated, atten, markings, gain=None) -> None:
    has = st.present[:, F["pneumothorax"]]
    depth = 0.08 + 0.55 * st.severity[:, F["pneumothorax"]]  # rim thickness in lung radius
    for side, idx in _sides(st.pneumothorax_side, has).items():
        if not len(idx):
            continue
        u, v = lungs.u[side][idx], lungs.v[side][idx]
        # Radius about a medial-basal centre: the gas collects apically and laterally.
        r = np.sqrt(((u + 0.4) / 1.4) ** 2 + ((v - 0.5) / 1.5) ** 2)
        edge_r = 1 - _col(depth[idx])
        mask = aerated[side][idx] * np.clip((0.8 - v) / 0.4, 0, 1)
        pr = grid.px / (_col(lungs.width[side][idx]) * 0.7)  # one pixel in units of r
        rim = mask * _edge(r - edge_r, 1.5 * pr)
        line = mask * np.exp(-(((r - edge_r) / (0.7 * pr)) ** 2))
        g = _gain(gain, idx)
        atten[idx] += (-0.1 * rim + 0.25 * line + 0.12 * (mask - rim) * _col(depth[idx])) * g
        markings[idx] *= 1 - rim * g


def _consolidation(st: Studies, grid: _Grid, lungs: _Lungs, atten, rng, gain=None) -> None:
    idx = np.nonzero(st.present[:, F["consolidation"]])[0]
    if not len(idx):
        return
    sev = _col(st.severity[idx, F["consolidation"]])
    side = st.consolidation_side[idx]
    u0, v0 = _col(st.consolidation_center[idx, 0]), _col(st.consolidation_center[idx, 1])
    su, sv = 0.35 + 0.45 * sev, 0.25 + 0.35 * sev
    left = (side == LEFT)[:, None, None]
    u = np.where(left, lungs.u[LEFT][idx], lungs.u[RIGHT][idx])
    v = np.where(left, lungs.v[LEFT][idx], lungs.v[RIGHT][idx])
    raw = np.where(left, lungs.raw[LEFT][idx], lungs.raw[RIGHT][idx])
    patch = _smooth_noise(rng, len(idx), max(grid.size // 6, 8), grid.size)
    g = np.exp(-(((u - u0) / su) ** 2) - ((v - v0) / sv) ** 2)
    blob = np.clip(1.6 * g * (0.75 + 0.35 * patch) - 0.25, 0, 1)
    atten[idx] += (0.3 + 0.35 * sev) * raw * blob * _gain(gain, idx)


def _lesion(st: Studies, grid: _Grid, lungs: _Lungs, atten, rng, gain=None) -> None:
    idx = np.nonzero(st.present[:, F["lung_lesion"]])[0]
    if not len(idx):
        return
    sev = st.severity[idx, F["lung_lesion"]]
    cx, cy = lungs.to_body(idx, st.lesion_side[idx], st.lesion_center[idx])
    radius = _col(0.045 + 0.17 * sev)
    d = _dist(grid.x[idx], grid.y[idx], _col(cx), _col(cy))
    # A sphere's projected thickness, anti-aliased at the rim.
    disk = np.sqrt(np.clip(1 - (d / radius) ** 2, 0, 1)) ** 0.5 * _edge(radius - d, grid.px)
    atten[idx] += _col(rng.uniform(0.4, 0.6, len(idx))) * disk * _gain(gain, idx)


def _bezier(ctrl: np.ndarray, n: int) -> np.ndarray:
    """Cubic Bezier points: ctrl (K, 4, 2) -> (K, n, 2)."""
    t = np.linspace(0, 1, n)[None, :, None]
    p0, p1, p2, p3 = (ctrl[:, i, None, :] for i in range(4))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3


def _device_curves(st: Studies, lungs: _Lungs, lateral: bool, rng) -> np.ndarray:
    """Control points (B, 4 devices, 4, 2) of every device type for every study."""
    b, tw = len(st.view), st.thorax

    def p(x, y):
        return np.stack([np.broadcast_to(x, (b,)) + rng.normal(0, 0.015, b),
                         np.broadcast_to(y, (b,)) + rng.normal(0, 0.015, b)], 1)

    hx, hy, hw, hh = _heart_geometry(st, lungs, lateral)
    base = lungs.bottom[LEFT]
    s = np.where(st.line_side == LEFT, 1.0, -1.0)
    if lateral:
        ett = [p(-0.05, -1.1), p(0.0, -0.8), p(0.05, -0.6), p(0.08, -0.45)]
        line = [p(0.0, -1.1), p(0.0, -0.75), p(-0.05, -0.5), p(-0.1, -0.25)]
        tube = [p(0.2, -1.1), p(0.3, -0.3), p(0.3, 0.4), p(0.0, base + 0.15)]
        box = p(-0.6 * tw, -0.6)
    else:
        ett = [p(0.0, -1.1), p(0.0, -0.8), p(0.0, -0.6), p(0.0, rng.uniform(-0.5, -0.38, b))]
        line = [p(s * 0.3, -1.1), p(s * 0.22, -0.75), p(s * 0.05 - 0.03, -0.5), p(-0.05, -0.22)]
        tube = [p(0.02, -1.1), p(0.03, 0.1), p(0.05, 0.8), p(0.3 * tw, base + 0.14)]
        box = p(0.52 * tw, -0.62)
    lead = [box, p(0.15, -0.75), p(-0.1, -0.3), p(hx + 0.3 * hw, hy + 0.3 * hh)]
    return np.stack([np.stack(c, 1) for c in (ett, line, tube, lead)], 1), box


def _devices(st: Studies, grid: _Grid, lungs: _Lungs, atten, lateral: bool, rng, gain=None) -> None:
    """Tubes and lines are splatted as anti-aliased curves; a pacemaker is a bright box."""
    b, size = len(st.view), grid.size
    ctrl, box = _device_curves(st, lungs, lateral, rng)
    study, kind = np.nonzero(st.devices)
    if not len(study):
        return
    contrast = np.where(st.subtle[:, F["support_devices"]], 0.45, 1.0)
    if gain is not None:
        contrast = contrast * gain
    stroke = contrast[study, None]
    pts = _bezier(ctrl[study, kind], 3 * size)
    cx, cy = grid.to_pixels(study, pts[..., 0], pts[..., 1])
    tx, ty = np.gradient(cx, axis=1), np.gradient(cy, axis=1)
    seg = np.sqrt(tx * tx + ty * ty) + 1e-9
    flat = np.zeros(b * size * size)
    # Tubes are a few millimetres wide: one pixel at 64 px, so more parallel strokes above.
    strokes = max(1, round(size / 64))
    for k in range(strokes):
        off = (k - (strokes - 1) / 2) * 0.8
        sx, sy = cx - off * ty / seg, cy + off * tx / seg
        x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        fx, fy = sx - x0, sy - y0
        for ddx, ddy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                             (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + ddx, y0 + ddy
            ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            idx = (study[:, None] * size + yi) * size + xi
            flat += np.bincount(idx[ok], (seg * wt * stroke)[ok], minlength=b * size * size)
    atten += 1.2 * np.minimum(flat.reshape(b, size, size), 1.0).astype(_F32)
    pi = np.nonzero(st.devices[:, 3])[0]
    if len(pi):
        bx, by = _col(box[pi, 0]), _col(box[pi, 1])
        atten[pi] += (1.5 * _edge(0.07 - np.abs(grid.x[pi] - bx), grid.px)
                      * _edge(0.045 - np.abs(grid.y[pi] - by), grid.px)
                      * (1.0 if gain is None else _col(contrast[pi])))


def _shift(st: Studies, shifted: np.ndarray) -> tuple[Studies, np.ndarray]:
    """The shifted studies' findings smaller (severity, cardiomegaly's excess CTR) and their
    per-study finding contrast; unshifted studies keep theirs."""
    severity = np.where(shifted[:, None], st.severity * SHIFT_SIZE, st.severity)
    enlarged = shifted & st.present[:, F["cardiomegaly"]]
    ctr = np.where(enlarged, 0.5 + (st.ctr - 0.5) * SHIFT_SIZE, st.ctr)
    gain = np.where(shifted, SHIFT_CONTRAST, 1.0).astype(_F32)
    return dataclasses.replace(st, severity=severity, ctr=ctr), gain


def _render_view(st: Studies, size: int, rng: np.random.Generator, lateral: bool,
                 shifted: np.ndarray | None = None) -> np.ndarray:
    # One stream per component, so a finding's presence never shifts another's random draws:
    # the same study with a finding removed renders identically elsewhere.
    texture_rng, cons_rng, lesion_rng, device_rng, noise_rng = rng.spawn(5)
    gain = None
    if shifted is not None and shifted.any():
        st, gain = _shift(st, shifted)
    grid = _Grid(st, size)
    lungs = _Lungs(st, grid, lateral)
    atten, aerated = _anatomy(st, grid, lungs, lateral)
    markings = _markings(st, grid, lungs, aerated, texture_rng, lateral)
    _effusion(st, lungs, atten, gain)
    _pneumothorax(st, grid, lungs, aerated, atten, markings, gain)
    atten += 0.12 * markings
    _consolidation(st, grid, lungs, atten, cons_rng, gain)
    _lesion(st, grid, lungs, atten, lesion_rng, gain)
    _devices(st, grid, lungs, atten, lateral, device_rng, gain)
    img = 1 - np.exp(-_col(st.exposure) * np.maximum(atten, 0))
    lo, hi = _col(st.window[:, 0]), _col(st.window[:, 1])
    img = np.clip((img - lo) / (hi - lo), 0, 1) ** _col(st.gamma)
    img += _col(st.noise) * noise_rng.standard_normal(img.shape, dtype=_F32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def render(st: Studies, size: int, rng: np.random.Generator,
           shifted: np.ndarray | None = None) -> np.ndarray:
    """Render a chunk of studies as (B, size, size) uint8 radiographs; `shifted` (bool (B,),
    optional) marks the studies whose findings are drawn more subtly (see the module doc)."""
    out = np.empty((len(st.view), size, size), np.uint8)
    for lateral in (False, True):
        idx = np.nonzero((st.view == LATERAL) == lateral)[0]
        if len(idx):
            part = None if shifted is None else np.asarray(shifted, bool)[idx]
            out[idx] = _render_view(st.take(idx), size, rng, lateral, part)
    return out


def subgroup_shifted(st: Studies, shift: str) -> np.ndarray | None:
    """The studies a subgroup shift draws more subtly: "sex" -> female patients' studies;
    "none" -> None (no study)."""
    if shift == "none":
        return None
    if shift == "sex":
        return st.sex == SEXES.index("F")
    raise ValueError(f"subgroup_shift must be 'none' or 'sex', got {shift!r}")
