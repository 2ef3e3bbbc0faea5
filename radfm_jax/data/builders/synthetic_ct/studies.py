"""Who is scanned and what they have: patients, studies, findings and their sizes.

Every study is drawn from its own generator (seeded from the build seed and the study's global
index), so a record depends only on the build's config and its position, never on build order.
Rendering (render.py) decides where inside the anatomy a finding lands; reports (reports.py)
read the `Study` drawn here plus those placements.

Sides are the patient's: RIGHT is +x in RAS world coordinates.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")
SEXES: tuple[str, ...] = ("F", "M")
SIDES: tuple[str, ...] = ("right", "left", "bilateral")
RIGHT, LEFT, BILATERAL = 0, 1, 2

# The findings rendered, each a name of ct_rate.tables.LABEL_NAMES.
FINDINGS: tuple[str, ...] = ("cardiomegaly", "pericardial_effusion", "lymphadenopathy", "emphysema",
                             "lung_nodule", "consolidation", "pleural_effusion")
LOBES: tuple[str, ...] = ("right upper lobe", "right middle lobe", "right lower lobe",
                          "left upper lobe", "left lower lobe")
LOBE_SIDE: tuple[int, ...] = (RIGHT, RIGHT, RIGHT, LEFT, LEFT)
# Mediastinal / hilar lymph node stations and the side each lies on (None: midline).
STATIONS: tuple[str, ...] = ("right paratracheal", "left paratracheal", "subcarinal", "prevascular",
                             "aortopulmonary window", "right hilar", "left hilar")
STATION_SIDE: tuple[int | None, ...] = (RIGHT, LEFT, None, None, LEFT, RIGHT, LEFT)
EMPHYSEMA_KINDS: tuple[str, ...] = ("centrilobular", "panlobular", "paraseptal")

SUBTLE_RATE = 0.2  # share of positive findings drawn at the hard end (small, faint)
# Prevalence of each finding for an average study, before the acuity / co-occurrence terms.
_BASE_RATE = {"cardiomegaly": 0.12, "pericardial_effusion": 0.06, "lymphadenopathy": 0.14,
              "emphysema": 0.15, "lung_nodule": 0.25, "consolidation": 0.12, "pleural_effusion": 0.12}


@dataclasses.dataclass(frozen=True)
class Patients:
    """Per-patient traits, indexed by global patient index; a patient's studies share them."""

    sex: np.ndarray  # 0 = F, 1 = M
    age: np.ndarray  # at the first study
    body: np.ndarray  # (P, 2) body half-width (lateral) and half-depth (AP) in mm
    fat: np.ndarray  # subcutaneous fat thickness, mm
    lung_height: np.ndarray  # apex to diaphragm dome, mm
    ctr: np.ndarray  # normal cardiothoracic ratio
    frailty: np.ndarray  # raises the odds of every acute finding across the patient's studies
    emphysema: np.ndarray  # (P,) fraction of lung that is emphysematous (0 = none); chronic
    emphysema_kind: np.ndarray


@dataclasses.dataclass(frozen=True)
class Nodule:
    side: int  # RIGHT or LEFT
    lobe: int  # index into LOBES (render.py may move it to another lobe of the side)
    diameter_mm: float
    solid: bool  # False: ground-glass
    hu: float


@dataclasses.dataclass(frozen=True)
class Node:
    station: int  # index into STATIONS
    short_axis_mm: float


@dataclasses.dataclass(frozen=True)
class Study:
    """One study: identity, anatomy and findings. Parameters of absent findings are ignored."""

    patient_id: str
    study_id: str
    sex: int
    age: int
    # Anatomy (mm, HU).
    body: tuple[float, float]  # half-width, half-depth
    fat_mm: float
    lung_height_mm: float
    offset: tuple[float, float]  # body centre (x, y) on the table, mm
    ctr: float  # cardiothoracic ratio as rendered (cardiomegaly included)
    noise_hu: float  # scanner noise standard deviation
    normal_nodes: tuple[Node, ...]  # small (< 10 mm) nodes every mediastinum has
    # Findings.
    present: frozenset[str]
    subtle: frozenset[str]
    pericardial_mm: float = 0.0
    nodes: tuple[Node, ...] = ()
    emphysema_fraction: float = 0.0
    emphysema_kind: int = 0
    nodules: tuple[Nodule, ...] = ()
    consolidation_lobe: int = 0
    consolidation_extent: float = 0.0  # fraction of the lobe
    consolidation_hu: float = 0.0
    effusion_side: int = RIGHT
    effusion_depth_mm: float = 0.0  # fluid thickness at the lung base, posteriorly
    effusion_hu: float = 0.0

    def labels(self, label_names: tuple[str, ...]) -> np.ndarray:
        """int8 0 / 1 per label name; names not rendered here are always 0."""
        return np.array([name in self.present for name in label_names], np.int8)


def _pseudonym(index: int, prefix: str, multiplier: int, salt: int) -> str:
    # An affine map that is a bijection modulo 10**8: unique, stable, not the raw index.
    return f"{prefix}{(index * multiplier + salt) % 10**8:08d}"


def sample_patients(num_patients: int, seed: int) -> Patients:
    rng = np.random.default_rng([seed, 1])
    n = num_patients
    sex = rng.integers(0, 2, n)
    age = (20 + 70 * rng.beta(2.4, 1.6, n)).astype(np.int32)
    width = rng.uniform(135, 165, n) + 10 * sex
    depth = rng.uniform(92, 125, n) + 4 * sex
    # Emphysema is chronic: a patient has it (or not) in every study, more often when older.
    p_emph = 1 / (1 + np.exp(-(np.log(_BASE_RATE["emphysema"] / (1 - _BASE_RATE["emphysema"]))
                               + (age - 60) / 15)))
    has = rng.random(n) < p_emph
    subtle = rng.random(n) < SUBTLE_RATE
    fraction = np.where(subtle, rng.uniform(0.03, 0.05, n), rng.uniform(0.07, 0.35, n))
    return Patients(
        sex=sex, age=age, body=np.stack([width, depth], 1), fat=rng.uniform(6, 32, n),
        lung_height=rng.uniform(195, 225, n) + 10 * sex, ctr=rng.uniform(0.38, 0.48, n),
        frailty=rng.normal(0.0, 0.5, n), emphysema=np.where(has, fraction, 0.0),
        emphysema_kind=rng.choice(3, n, p=[0.6, 0.2, 0.2]),
    )


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _draw_present(rng: np.random.Generator, age: int, frailty: float) -> set[str]:
    """Co-occurring findings: an acuity score raises them all; heart failure links cardiomegaly
    with both effusions, infection links consolidation with effusion and nodes."""
    acuity = rng.normal() + frailty
    older = (age - 60) / 15.0
    present: set[str] = set()

    def draw(name: str, extra: float) -> None:
        if rng.random() < 1 / (1 + np.exp(-(_logit(_BASE_RATE[name]) + extra))):
            present.add(name)

    draw("cardiomegaly", 0.4 * acuity + 0.4 * older)
    cardio = "cardiomegaly" in present
    draw("consolidation", 0.6 * acuity)
    cons = "consolidation" in present
    draw("pleural_effusion", 0.5 * acuity + 1.0 * cardio + 0.6 * cons)
    draw("pericardial_effusion", 0.3 * acuity + 1.0 * cardio)
    draw("lymphadenopathy", 0.3 * acuity + 0.8 * cons)
    draw("lung_nodule", 0.4 * older)
    return present


def _lobe_of_side(rng: np.random.Generator, side: int) -> int:
    # Weighted roughly by lobe volume.
    if side == RIGHT:
        return int(rng.choice(3, p=[0.38, 0.17, 0.45]))
    return int(3 + rng.choice(2, p=[0.5, 0.5]))


def _nodules(rng: np.random.Generator, subtle: bool) -> tuple[Nodule, ...]:
    count = 1 if subtle else int(rng.choice([1, 2, 3], p=[0.6, 0.28, 0.12]))
    out = []
    for _ in range(count):
        side = int(rng.integers(0, 2))
        solid = bool(rng.random() < 0.75)
        if subtle:  # a few-mm solid nodule or a faint ground-glass one
            diameter = rng.uniform(4, 6) if solid else rng.uniform(6, 10)
            hu = rng.uniform(0, 40) if solid else rng.uniform(-720, -650)
        else:  # mostly small, sometimes a mass of a few cm (log-uniform 6-35 mm)
            diameter = float(np.exp(rng.uniform(np.log(6), np.log(35))))
            hu = rng.uniform(20, 60) if solid else rng.uniform(-650, -450)
        out.append(Nodule(side, _lobe_of_side(rng, side), round(float(diameter), 1), solid, float(hu)))
    return tuple(out)


def _nodes(rng: np.random.Generator, subtle: bool) -> tuple[Node, ...]:
    count = 1 if subtle else int(rng.choice([1, 2, 3, 4, 5], p=[0.3, 0.3, 0.2, 0.12, 0.08]))
    stations = rng.choice(len(STATIONS), size=count, replace=False)
    sizes = rng.uniform(11, 13, count) if subtle else rng.uniform(13, 32, count)
    return tuple(Node(int(s), round(float(z), 1)) for s, z in zip(stations, sizes))


def sample_study(patients: Patients, patient: int, visit: int, study: int, seed: int,
                 rng: np.random.Generator) -> Study:
    """Draw one study of global patient index `patient` (its `visit`-th) and global index `study`."""
    age = int(patients.age[patient] + 2 * visit)
    present = _draw_present(rng, age, float(patients.frailty[patient]))
    emphysema = float(patients.emphysema[patient])
    if emphysema > 0:
        present.add("emphysema")
    subtle = {name for name in present if rng.random() < SUBTLE_RATE}
    if "emphysema" in present:  # chronic: the patient's own severity, not a fresh draw
        subtle.discard("emphysema")
        if emphysema < 0.06:
            subtle.add("emphysema")

    def between(subtle_range, clear_range, name) -> float:
        return float(rng.uniform(*(subtle_range if name in subtle else clear_range)))

    ctr = float(patients.ctr[patient])
    if "cardiomegaly" in present:
        ctr = between((0.51, 0.54), (0.55, 0.70), "cardiomegaly")
    effusion_side = int(rng.choice(3, p=[0.35, 0.30, 0.35]))
    cons_side = int(rng.choice(2, p=[0.55, 0.45]))
    normal_nodes = tuple(Node(int(s), round(float(rng.uniform(4, 8)), 1))
                         for s in rng.choice(len(STATIONS), size=int(rng.integers(1, 4)), replace=False))
    return Study(
        patient_id=_pseudonym(patient, "p", 2654435761, 7919 * seed + 11),
        study_id=_pseudonym(study, "s", 1103515245, 104729 * seed + 13),
        sex=int(patients.sex[patient]),
        age=age,
        body=(float(patients.body[patient, 0]), float(patients.body[patient, 1])),
        fat_mm=float(patients.fat[patient]),
        lung_height_mm=float(patients.lung_height[patient]),
        offset=(float(rng.uniform(-10, 10)), float(rng.uniform(-15, 5))),
        ctr=ctr,
        noise_hu=float(rng.uniform(8, 18)),
        normal_nodes=normal_nodes,
        present=frozenset(present),
        subtle=frozenset(subtle),
        pericardial_mm=between((3, 5), (6, 25), "pericardial_effusion"),
        nodes=_nodes(rng, "lymphadenopathy" in subtle),
        emphysema_fraction=min(0.4, emphysema * (1 + 0.03 * visit)),
        emphysema_kind=int(patients.emphysema_kind[patient]),
        nodules=_nodules(rng, "lung_nodule" in subtle),
        consolidation_lobe=_lobe_of_side(rng, cons_side),
        consolidation_extent=between((0.05, 0.15), (0.25, 0.9), "consolidation"),
        consolidation_hu=between((-400, -250), (15, 45), "consolidation"),
        effusion_side=effusion_side,
        effusion_depth_mm=between((5, 10), (14, 80), "pleural_effusion"),
        effusion_hu=float(rng.uniform(3, 18)),
    )
