"""Rendering one study as a chest CT volume in Hounsfield units.

World coordinates are RAS+ millimetres (x towards the patient's right, y anterior, z superior)
centred on the field of view. The voxel grid is laid out the way scanners write it, LPS (i
towards the patient's left, j posterior, k superior), at the spacing of the stored records, so
PreprocessSpec.apply_volume really reorients it; after to_model_layout the stored (D, H, W)
array has W index 0 at the patient's right and W - 1 at the patient's left.

Anatomy is painted back to front on the whole grid, each structure a soft mask (about one voxel
of partial volume at its edge) so small objects keep their volume at any spacing: air, body fat,
muscle, the thoracic cavity (mediastinal fat), upper abdomen under domed hemidiaphragms, lungs
(dependent density gradient, texture, branching vessel trees splatted as partial volume),
heart in its fat, aorta, trachea and main bronchi, oesophagus, lymph nodes, ribs, sternum and
vertebrae, then scanner noise. Lung findings change the lung field before it is painted;
mediastinal ones are painted with the mediastinum. Each component draws from its own stream, so
adding a finding changes no other voxel's random draws.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from radfm_jax.data.builders.synthetic_ct.studies import (
    BILATERAL,
    EMPHYSEMA_KINDS,
    LEFT,
    LOBE_SIDE,
    RIGHT,
    STATIONS,
    Node,
    Study,
)
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.data.volume import Volume

_F32 = np.float32
AIR, FAT, MUSCLE, BLOOD, LIVER, LUNG = -1000.0, -95.0, 45.0, 40.0, 58.0, -865.0
BONE, CORTEX, DISC, CSF, EMPHYSEMA, AIRWAY = 600.0, 850.0, 80.0, 15.0, -965.0, -950.0
NODE_HU = 38.0
_TREE_LEVELS = 6


@dataclasses.dataclass(frozen=True)
class NodulePlacement:
    """Where a nodule was rendered: RAS mm centre, and the lobe (LOBES index) it lies in."""

    side: int
    lobe: int
    centre: tuple[float, float, float]
    diameter_mm: float
    solid: bool


@dataclasses.dataclass(frozen=True)
class Rendered:
    volume: Volume  # HU, LPS voxel axes
    nodules: tuple[NodulePlacement, ...]
    consolidation_lobe: int  # LOBES index where the consolidation was drawn (-1: none)


def _inside(signed_mm, edge: float) -> np.ndarray:
    """Soft inside-ness from a signed distance in mm (positive inside), linear over `edge`."""
    return np.clip(np.asarray(signed_mm, _F32) / _F32(edge) + _F32(0.5), 0, 1)


def _paint(hu: np.ndarray, mask, value) -> None:
    """hu <- hu + mask * (value - hu) in place (mask and value broadcast against hu)."""
    hu += mask * (value - hu)


class _Grid:
    """Voxel centres' RAS coordinates as broadcastable axes: x (W, 1, 1), y (1, H, 1), z (1, 1, D)."""

    def __init__(self, spec: PreprocessSpec):
        depth, height, width = spec.size
        self.spacing = np.asarray(spec.spacing, np.float64)  # mm along i, j, k
        self.shape = (width, height, depth)
        sx, sy, sz = self.spacing
        self.affine = np.diag([-sx, -sy, sz, 1.0])
        self.affine[:3, 3] = [sx * (width - 1) / 2, sy * (height - 1) / 2, -sz * (depth - 1) / 2]
        axes = [self.affine[a, a] * np.arange(n) + self.affine[a, 3] for a, n in enumerate(self.shape)]
        self.x = axes[0].astype(_F32)[:, None, None]
        self.y = axes[1].astype(_F32)[None, :, None]
        self.z = axes[2].astype(_F32)[None, None, :]
        self.edge = float(np.prod(self.spacing) ** (1 / 3))  # partial-volume width, mm
        self.voxel_mm3 = float(np.prod(self.spacing))

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """RAS mm points (..., 3) -> continuous voxel indices (..., 3)."""
        return (points - self.affine[:3, 3]) / np.diag(self.affine)[:3]

    def box(self, centre, half_mm) -> tuple[slice, slice, slice]:
        """The voxel index ranges covering centre +- half_mm along each axis (maybe empty)."""
        lo = self.to_index(np.asarray(centre) - half_mm)
        hi = self.to_index(np.asarray(centre) + half_mm)
        first, last = np.floor(np.minimum(lo, hi)).astype(int), np.ceil(np.maximum(lo, hi)).astype(int)
        return tuple(slice(max(0, a), max(0, min(n, b + 1))) for a, b, n in zip(first, last, self.shape))


def _ellipsoid(grid: _Grid, hu: np.ndarray, centre, axes, value: float,
               region: np.ndarray | None = None) -> None:
    """Paint a soft ellipsoid (axes = half-lengths along x, y, z in mm) inside its bounding box;
    `region` (full-grid mask) limits it to, e.g., the lungs."""
    axes = np.asarray(axes, np.float64)
    box = grid.box(centre, axes + 2 * grid.edge)
    x, y, z = grid.x[box[0]], grid.y[:, box[1]], grid.z[:, :, box[2]]
    q = np.sqrt(((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
                + ((z - centre[2]) / axes[2]) ** 2)
    mask = _inside((1 - q) * _F32(axes.mean()), grid.edge)
    if region is not None:
        mask = mask * region[box]
    _paint(hu[box], mask, _F32(value))


def _segment_distance(grid: _Grid, p0, p1, box) -> np.ndarray:
    """Distance (mm) from the voxels of `box` to the segment p0-p1."""
    x, y, z = grid.x[box[0]], grid.y[:, box[1]], grid.z[:, :, box[2]]
    d = np.asarray(p1, np.float64) - np.asarray(p0, np.float64)
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / float(d @ d), 0, 1)
    return np.sqrt((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2)


def _tube(grid: _Grid, p0, p1, radius: float) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """A capsule of `radius` around p0-p1: its bounding box and soft mask there."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    lo, hi = np.minimum(p0, p1), np.maximum(p0, p1)
    box = grid.box((lo + hi) / 2, (hi - lo) / 2 + radius + 2 * grid.edge)
    return box, _inside(radius - _segment_distance(grid, p0, p1, box), grid.edge)


def _paint_tube(grid: _Grid, hu: np.ndarray, p0, p1, radius: float, value: float) -> None:
    box, mask = _tube(grid, p0, p1, radius)
    _paint(hu[box], mask, _F32(value))


def _smooth_noise(rng: np.random.Generator, grid: _Grid, corr_mm: float) -> np.ndarray:
    """Roughly unit Gaussian noise correlated over about corr_mm."""
    field = ndimage.gaussian_filter(rng.standard_normal(grid.shape, dtype=_F32),
                                    sigma=np.maximum(0.7, corr_mm / grid.spacing), mode="wrap")
    return field / max(float(field.std()), 1e-6)


class _Anatomy:
    """Per-study geometry (mm, body-relative x / y) shared by the anatomy and the findings."""

    def __init__(self, st: Study, grid: _Grid):
        self.ox, self.oy = st.offset
        self.xr, self.yr, self.z = grid.x - _F32(self.ox), grid.y - _F32(self.oy), grid.z
        self.a, self.b = st.body
        wall = st.fat_mm + 14.0  # fat, then muscle and ribs
        self.ac, self.bc = self.a - wall, self.b - wall  # thoracic cavity half-axes
        self.top = 0.5 * st.lung_height_mm + 20.0  # lung apex
        self.dome = {RIGHT: self.top - st.lung_height_mm, LEFT: self.top - st.lung_height_mm - 12.0}
        self.recess = self.dome[LEFT] - 55.0  # lowest point of the lungs (posterior recess)
        self.carina = self.top - 65.0
        self.r_vb = 18.0
        self.y_vb = -self.bc - 5.0 + self.r_vb  # vertebral body centre
        self.y_tr = self.y_vb + self.r_vb + 22.0  # trachea
        hw = st.ctr * self.ac  # heart half-width: CTR = heart width / internal thoracic width
        self.heart_axes = (hw, min(0.72 * hw, 0.8 * self.bc), min(0.8 * hw, 0.35 * st.lung_height_mm))
        self.heart = (-10.0 - 0.2 * hw, 0.12 * self.bc, self.dome[LEFT] + 0.7 * self.heart_axes[2])
        self.hilum = {RIGHT: (38.0, self.y_tr - 5.0, self.carina - 20.0),
                      LEFT: (-45.0, self.y_tr - 8.0, self.carina - 30.0)}
        # Cavity: an ellipse that narrows towards the apex (dome-shaped top).
        self.taper = np.sqrt(np.clip((self.top - self.z) / 130.0, 0, 1)).astype(_F32)
        self.g_cav = np.sqrt((self.xr / self.ac) ** 2 + (self.yr / self.bc) ** 2)  # (W, H, 1)
        # Domed hemidiaphragms: highest at the dome, lower laterally and posteriorly.
        u = np.abs(self.xr) / self.ac
        v = self.yr / self.bc
        drop = 50 * np.clip((u - 0.35) / 0.65, 0, 1) ** 2 + 55 * np.clip((-v - 0.1) / 0.9, 0, 1) ** 2
        self.diaphragm = np.where(self.xr > -5, _F32(self.dome[RIGHT]), _F32(self.dome[LEFT])) - drop

    def world(self, x_rel, y_rel, z) -> tuple[float, float, float]:
        return (float(x_rel) + self.ox, float(y_rel) + self.oy, float(z))

    def lobe_map(self) -> np.ndarray:
        """LOBES index of every voxel as if it were lung: the oblique fissure runs from high
        posteriorly to low anteriorly; the right horizontal fissure splits upper from middle."""
        h = (self.z - self.recess) / (self.top - self.recess)
        p = (self.yr + self.bc) / (2 * self.bc)  # 0 posterior, 1 anterior
        lower = h < 0.7 - 0.6 * p
        right = self.xr > -5
        return np.where(right, np.where(lower, 2, np.where(h > 0.58, 0, 1)),
                        np.where(lower, 4, 3)).astype(np.int8)


def _vessel_density(st: Study, grid: _Grid, an: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Branching pulmonary vessel trees from each hilum, splatted as volume fractions."""
    points, weights, radii = [], [], []
    step = 0.5 * float(grid.spacing.min())
    for side, sign in ((RIGHT, 1.0), (LEFT, -1.0)):
        # Three lobar trunks: up, lateral, down-and-back.
        dirs = np.array([[0.45 * sign, 0.1, 0.9], [sign, 0.25, 0.0], [0.45 * sign, -0.35, -0.85]])
        starts = np.repeat(np.asarray(an.world(*an.hilum[side]))[None], 3, 0)
        length, radius = np.full(3, 55.0), np.full(3, 6.5)
        outward = np.array([sign, 0.0, 0.0])
        for _ in range(_TREE_LEVELS):
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            ends = starts + dirs * length[:, None]
            k = max(2, int(np.ceil(length.max() / step)) + 1)
            t = np.linspace(0, 1, k)[None, :, None]
            points.append((starts[:, None] + t * (ends - starts)[:, None]).reshape(-1, 3))
            weights.append(np.repeat(np.pi * radius ** 2 * length / k / grid.voxel_mm3, k))
            radii.append(np.repeat(radius, k))
            n = 2 * len(starts)
            dirs = np.repeat(dirs, 2, 0) + 0.6 * rng.standard_normal((n, 3)) + 0.3 * outward
            starts = np.repeat(ends, 2, 0)
            length = np.repeat(length, 2) * 0.78 * rng.uniform(0.8, 1.2, n)
            radius = np.repeat(radius, 2) * 0.72
    idx = grid.to_index(np.concatenate(points))
    weight, radius = np.concatenate(weights), np.concatenate(radii)
    out = np.zeros(grid.shape, _F32)
    thick = radius > 0.75 * grid.spacing.min()
    for group, is_thick in ((thick, True), (~thick, False)):
        if not group.any():
            continue
        flat = np.zeros(int(np.prod(grid.shape)))
        base = np.floor(idx[group]).astype(int)
        frac = idx[group] - base
        for corner in np.ndindex(2, 2, 2):
            c = base + corner
            w = weight[group] * np.prod(np.where(corner, frac, 1 - frac), axis=1)
            ok = np.all((c >= 0) & (c < grid.shape), axis=1)
            flat += np.bincount(np.ravel_multi_index(c[ok].T, grid.shape), w[ok], minlength=flat.size)
        # Thick vessels spread over their cross-section; thin ones over about a voxel.
        sigma = np.maximum(0.6, 0.6 * radius[group].mean() / grid.spacing) if is_thick else 0.6
        out += ndimage.gaussian_filter(flat.reshape(grid.shape).astype(_F32), sigma)
    return np.clip(out, 0, 0.85)


def _pick_voxel(rng: np.random.Generator, candidates: list[np.ndarray]) -> tuple[int, int, int] | None:
    """A uniformly chosen voxel of the first non-empty candidate mask."""
    for mask in candidates:
        where = np.flatnonzero(mask)
        if len(where):
            return np.unravel_index(where[rng.integers(len(where))], mask.shape)
    return None


def _emphysema(st: Study, grid: _Grid, an: _Anatomy, lung: np.ndarray, rng) -> np.ndarray:
    """Soft mask of low-attenuation areas covering about emphysema_fraction of the lungs:
    upper-zone (centrilobular), lower-zone (panlobular) or subpleural (paraseptal) predominant."""
    field = _smooth_noise(rng, grid, 6.0)
    h = (an.z - an.recess) / (an.top - an.recess)
    kind = EMPHYSEMA_KINDS[st.emphysema_kind]
    if kind == "centrilobular":
        field = field + 1.2 * h
    elif kind == "panlobular":
        field = field + 1.2 * (1 - h)
    else:  # paraseptal: next to the chest wall
        field = field + 1.5 * np.clip((an.g_cav / np.maximum(an.taper, 0.05) - 0.75) / 0.25, 0, 1)
    inside = lung > 0.5
    if not inside.any():
        return np.zeros(grid.shape, _F32)
    threshold = np.quantile(field[inside], 1 - st.emphysema_fraction)
    return _inside(field - threshold, 0.2) * lung


def _consolidation(st: Study, grid: _Grid, an: _Anatomy, lung, lobes, rng) -> tuple[np.ndarray, int]:
    """Soft mask of an airspace consolidation filling consolidation_extent of one lobe."""
    side = LOBE_SIDE[st.consolidation_lobe]
    inside = lung > 0.5
    in_lobe = inside & (lobes == st.consolidation_lobe)
    seed = _pick_voxel(rng, [in_lobe, inside & ((an.xr > -5) == (side == RIGHT)), inside])
    if seed is None:
        return np.zeros(grid.shape, _F32), -1
    lobe = int(lobes[seed])
    region = inside & (lobes == lobe)
    centre = np.asarray([grid.x[seed[0], 0, 0], grid.y[0, seed[1], 0], grid.z[0, 0, seed[2]]])
    d2 = (grid.x - centre[0]) ** 2 + (grid.y - centre[1]) ** 2 + (grid.z - centre[2]) ** 2
    field = 0.6 * _smooth_noise(rng, grid, 15.0) - d2 / (2 * 40.0 ** 2)
    threshold = np.quantile(field[region], 1 - st.consolidation_extent)
    return _inside(field - threshold, 0.15) * region * lung, lobe


def _effusion(st: Study, an: _Anatomy, grid: _Grid, lung: np.ndarray) -> np.ndarray:
    """Soft mask of dependent (posterior, basal) pleural fluid on the study's side(s)."""
    taper = np.maximum(an.taper, 0.05)
    # The cavity's posterior wall at each (x, z); fluid layers up to depth(z) mm in front of it.
    posterior = -an.bc * taper * np.sqrt(np.clip(1 - (an.xr / (an.ac * taper)) ** 2, 0, 1))
    d0 = st.effusion_depth_mm
    depth = d0 * np.sqrt(np.clip(1 - (an.z - an.recess) / (60 + 2.2 * d0), 0, 1))
    # Capped by a level above the back of the cavity, so the fluid stays dependent laterally.
    level = _inside(2 * depth + 10 - (an.yr + an.bc), grid.edge)
    fluid = _inside(depth - (an.yr - posterior), grid.edge) * level * lung
    sides = {RIGHT: an.xr > -5, LEFT: an.xr <= -5}
    keep = sides[st.effusion_side] if st.effusion_side != BILATERAL else True
    return fluid * keep


def _nodules(st: Study, grid: _Grid, an: _Anatomy, field: np.ndarray, free: np.ndarray,
             lobes: np.ndarray, rng) -> tuple[NodulePlacement, ...]:
    """Paint each nodule as a sphere into the lung field, centred well inside free lung."""
    inside = free > 0.5
    clearance = ndimage.distance_transform_edt(inside, sampling=grid.spacing)
    out = []
    for nodule in st.nodules:
        r = nodule.diameter_mm / 2
        on_side = inside & ((an.xr > -5) == (nodule.side == RIGHT))
        in_lobe = on_side & (lobes == nodule.lobe)
        voxel = _pick_voxel(rng, [in_lobe & (clearance >= r + grid.edge), on_side & (clearance >= r + grid.edge),
                                  in_lobe, on_side, inside])
        if voxel is None:
            continue
        jitter = rng.uniform(-0.5, 0.5, 3) * grid.spacing
        centre = np.asarray([grid.x[voxel[0], 0, 0], grid.y[0, voxel[1], 0], grid.z[0, 0, voxel[2]]]) + jitter
        _ellipsoid(grid, field, centre, (r, r, r), nodule.hu)
        side = RIGHT if an.xr[voxel[0], 0, 0] > -5 else LEFT
        out.append(NodulePlacement(side, int(lobes[voxel]), tuple(float(c) for c in centre),
                                   nodule.diameter_mm, nodule.solid))
    return tuple(out)


def _station(an: _Anatomy, node: Node) -> tuple[float, float, float]:
    """A node's centre (body-relative x, y; z) at its station, clear of the trachea."""
    s = node.short_axis_mm / 2
    name = STATIONS[node.station]
    return {
        "right paratracheal": (11 + s, an.y_tr, an.carina + 25),
        "left paratracheal": (-(11 + s), an.y_tr, an.carina + 20),
        "subcarinal": (0.0, an.y_tr - 6 - s, an.carina - 22),
        "prevascular": (3.0, an.y_tr + 30 + s, an.carina + 12),
        "aortopulmonary window": (-22 - s / 2, an.y_tr + 8, an.carina + 4),
        "right hilar": (an.hilum[RIGHT][0] + s / 2, an.hilum[RIGHT][1] - 6, an.hilum[RIGHT][2]),
        "left hilar": (an.hilum[LEFT][0] - s / 2, an.hilum[LEFT][1] - 6, an.hilum[LEFT][2]),
    }[name]


def render(st: Study, spec: PreprocessSpec, rng: np.random.Generator) -> Rendered:
    """The study as an HU Volume on the grid of spec (size (D, H, W), spacing), LPS voxel axes."""
    texture_rng, vessel_rng, emph_rng, cons_rng, nodule_rng, noise_rng = rng.spawn(6)
    grid = _Grid(spec)
    an = _Anatomy(st, grid)
    xr, yr, z, edge = an.xr, an.yr, an.z, grid.edge
    hu = np.full(grid.shape, AIR, _F32)

    # Body wall: fat over muscle; breasts in front of the lower chest (women).
    g_body = np.sqrt((xr / an.a) ** 2 + (yr / an.b) ** 2)
    body = _inside((1 - g_body) * min(an.a, an.b), edge) * _inside(yr + 0.93 * an.b, edge)
    _paint(hu, body, FAT)
    if st.sex == 0:
        for sign in (1.0, -1.0):
            _ellipsoid(grid, hu, an.world(sign * 0.45 * an.a, 0.8 * an.b, an.heart[2]),
                       (0.25 * an.a, 0.35 * an.b, 60.0), -60.0)
    inner_a, inner_b = an.a - st.fat_mm, an.b - st.fat_mm
    muscle = _inside((1 - np.sqrt((xr / inner_a) ** 2 + (yr / inner_b) ** 2)) * min(inner_a, inner_b), edge)
    _paint(hu, muscle * _inside(yr + 0.93 * an.b - st.fat_mm, edge), MUSCLE)

    # Thoracic cavity (mediastinal fat by default) above the diaphragm, abdomen below it.
    cavity_2d = (1 - an.g_cav) * min(an.ac, an.bc)
    above = _inside(z - an.diaphragm, edge)
    thorax = _inside(an.taper * min(an.ac, an.bc) - an.g_cav * min(an.ac, an.bc), edge) * above
    _paint(hu, thorax, FAT)
    abdomen = _inside(cavity_2d, edge) * (1 - above)
    organ = np.where(xr > -0.3 * an.ac, _F32(LIVER), np.where(yr < 0, _F32(45.0), _F32(20.0)))
    _paint(hu, abdomen, organ)

    # Mediastinum: a central band, the heart in its fat and pericardium, the aorta's envelope.
    hx, hy, hz = an.world(*an.heart)
    ha = np.asarray(an.heart_axes)
    pericardial = st.pericardial_mm if "pericardial_effusion" in st.present else 0.0
    shell = pericardial + 4.0  # effusion plus epicardial / pericardial fat
    q_env = np.sqrt(((grid.x - hx) / (ha[0] + shell)) ** 2 + ((grid.y - hy) / (ha[1] + shell)) ** 2
                    + ((grid.z - hz) / (ha[2] + shell)) ** 2)
    heart_env = _inside((1 - q_env) * (ha.mean() + shell), edge)
    # Narrowing in front of the great vessels to the anterior junction of the lungs.
    band_width = 32.0 - 22.0 * np.clip((yr - an.y_tr - 30.0) / 40.0, 0, 1)
    band = _inside(band_width - np.abs(xr + 5), edge) * _inside(an.top + 10 - z, edge)
    spine_zone = _inside(an.r_vb + 6 - np.abs(xr), edge) * _inside(an.y_vb + an.r_vb - yr, edge)
    aorta = np.zeros(grid.shape, _F32)
    arch_z = an.carina + 20
    asc = np.asarray(an.world(15.0, 10.0, hz))
    asc_top = np.asarray(an.world(15.0, 10.0, arch_z))
    desc_top = np.asarray(an.world(-(an.r_vb + 10), an.y_vb + 4, arch_z))
    desc_bottom = np.asarray(an.world(-(an.r_vb + 10), an.y_vb + 4, float(grid.z.min()) - 10))
    aorta_parts = ((asc, asc_top, 15.0), (asc_top, desc_top, 13.0), (desc_top, desc_bottom, 12.0))
    for p0, p1, radius in aorta_parts:
        box, mask = _tube(grid, p0, p1, radius + 3)
        aorta[box] = np.maximum(aorta[box], mask)
    mediastinum = np.maximum(np.maximum(band, heart_env), np.maximum(aorta, spine_zone))
    lung = thorax * (1 - mediastinum)

    # Lung field: dependent gradient and texture, then findings, vessels, fluid.
    p_anterior = np.clip((yr + an.bc) / (2 * an.bc), 0, 1)
    field = LUNG + 50 * (1 - p_anterior) + 10 * _smooth_noise(texture_rng, grid, 12.0)
    vessels = _vessel_density(st, grid, an, vessel_rng)
    lobes = an.lobe_map() if {"lung_nodule", "consolidation"} & st.present else None
    if "emphysema" in st.present:
        low = _emphysema(st, grid, an, lung, emph_rng)
        _paint(field, low, EMPHYSEMA)
        vessels = vessels * (1 - 0.7 * low)
    _paint(field, vessels, BLOOD)
    consolidation_lobe, consolidated = -1, 0.0
    if "consolidation" in st.present:
        consolidated, consolidation_lobe = _consolidation(st, grid, an, lung, lobes, cons_rng)
        # Bronchi run with the arteries: inside dense consolidation they show as air bronchograms.
        bronchi = np.clip(vessels * 2.5, 0, 1) if st.consolidation_hu > 0 else 0.0
        _paint(field, consolidated, st.consolidation_hu + bronchi * (AIRWAY - st.consolidation_hu))
    fluid = _effusion(st, an, grid, lung) if "pleural_effusion" in st.present else 0.0
    placements: tuple[NodulePlacement, ...] = ()
    if "lung_nodule" in st.present:
        placements = _nodules(st, grid, an, field, lung * (1 - fluid) * (1 - consolidated), lobes, nodule_rng)
    _paint(field, fluid, st.effusion_hu)
    _paint(hu, lung, field)

    # Heart: fat shell, pericardial fluid, then the heart itself; the aorta, airways, oesophagus.
    _ellipsoid(grid, hu, (hx, hy, hz), ha + shell, FAT, region=thorax)
    if pericardial:
        _ellipsoid(grid, hu, (hx, hy, hz), ha + pericardial, 12.0, region=thorax)
    _ellipsoid(grid, hu, (hx, hy, hz), ha, BLOOD, region=thorax)
    for p0, p1, radius in aorta_parts:
        _paint_tube(grid, hu, p0, p1, radius, BLOOD)
    top = float(grid.z.max()) + 10
    _paint_tube(grid, hu, an.world(-8.0, an.y_vb + an.r_vb + 8, an.dome[LEFT]), an.world(-8.0, an.y_vb + an.r_vb + 8, top),
          7.0, MUSCLE)
    carina = an.world(0.0, an.y_tr, an.carina)
    _paint_tube(grid, hu, carina, an.world(0.0, an.y_tr, top), 11.0, MUSCLE)  # tracheal wall
    _paint_tube(grid, hu, carina, an.world(0.0, an.y_tr, top), 9.0, AIR)
    for side in (RIGHT, LEFT):
        _paint_tube(grid, hu, carina, an.world(*an.hilum[side]), 8.0, MUSCLE)
        _paint_tube(grid, hu, carina, an.world(*an.hilum[side]), 6.0, AIR)
    nodes = st.normal_nodes + (st.nodes if "lymphadenopathy" in st.present else ())
    for node in nodes:
        s = node.short_axis_mm / 2
        _ellipsoid(grid, hu, an.world(*_station(an, node)), (s, s, 1.4 * s), NODE_HU)

    # Bones: ribs in the chest wall, sternum, vertebral bodies with discs, posterior elements.
    rib_band = (an.g_cav - 1) * 0.5 * (an.ac + an.bc)
    phase = (z - 0.35 * (yr + an.bc)) / 32.0
    ribs = (_inside(5.0 - np.abs(rib_band - 6.0), edge) * np.clip((np.cos(2 * np.pi * phase) - 0.3) / 0.4, 0, 1)
            * _inside(z - (an.recess - 15), edge) * _inside(an.top + 15 - z, edge))
    _paint(hu, ribs, BONE)
    sternum = (_inside(14.0 - np.abs(xr), edge) * _inside(6.0 - np.abs(yr - an.bc - 8), edge)
               * _inside(z - (hz - ha[2]), edge) * _inside(an.carina + 30 - z, edge))
    _paint(hu, sternum, BONE)
    r_vb = np.sqrt(xr ** 2 + (yr - an.y_vb) ** 2)
    level = np.clip((np.cos(2 * np.pi * z / 30.0) + 0.55) / 0.3, 0, 1)  # discs between vertebrae
    _paint(hu, _inside(an.r_vb - r_vb, edge), DISC + level * (BONE - DISC))
    _paint(hu, _inside(r_vb - (an.r_vb - 3), edge) * _inside(an.r_vb - r_vb, edge) * level, CORTEX)
    canal_y = an.y_vb - an.r_vb - 10
    r_canal = np.sqrt(xr ** 2 + (yr - canal_y) ** 2)
    arch = _inside(14.0 - r_canal, edge) * _inside(canal_y + 4 - yr, edge)
    spinous = _inside(4.0 - np.abs(xr), edge) * _inside(canal_y - yr, edge) * _inside(yr - canal_y + 38, edge)
    _paint(hu, np.maximum(arch, spinous) * body, BONE)
    _paint(hu, _inside(8.0 - r_canal, edge), CSF)

    hu += _F32(st.noise_hu) * noise_rng.standard_normal(grid.shape, dtype=_F32)
    np.clip(hu, -1024, 3071, out=hu)
    return Rendered(Volume(values=hu, affine=grid.affine), placements, consolidation_lobe)
