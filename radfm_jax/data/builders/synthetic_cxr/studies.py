"""Who is imaged and what they have: patients, studies, findings and their severities.

Everything is drawn with numpy generators seeded from (seed, split, chunk), so a build is a pure
function of its config, and rendering / report writing only read the `Studies` drawn here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from radfm_jax.data.findings import FINDINGS

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Studies drawn, rendered and written together; fixed (not tied to image size) because the
# per-chunk random streams, and so the records, depend on it.
CHUNK_SIZE = 256

VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")
PA, AP, LATERAL = 0, 1, 2
SEXES: tuple[str, ...] = ("F", "M")
# Patient's right is drawn on the image's left in frontal views.
SIDES: tuple[str, ...] = ("right", "left", "bilateral")
RIGHT, LEFT, BILATERAL = 0, 1, 2
ZONES: tuple[str, ...] = ("upper", "mid", "lower")
DEVICES: tuple[str, ...] = ("endotracheal_tube", "central_line", "enteric_tube", "pacemaker")

F = {name: i for i, name in enumerate(FINDINGS)}
# Severity is in [0, 1]: subtle cases in [0, SUBTLE_MAX), the rest in [CLEAR_MIN, 1]; the gap
# keeps most positives plainly visible at 64 px while the subtle ones stay genuinely hard.
SUBTLE_MAX = 0.2
CLEAR_MIN = 0.3
SUBTLE_RATE = 0.2
# Base prevalence of each finding for an average study (before acuity / co-occurrence terms).
_BASE_RATE = {
    "cardiomegaly": 0.20,
    "pleural_effusion": 0.15,
    "pneumothorax": 0.08,
    "consolidation": 0.16,
    "lung_lesion": 0.14,
    "support_devices": 0.14,
}
_STUDIES_PER_PATIENT = (np.array([1, 2, 3, 4]), np.array([0.45, 0.30, 0.15, 0.10]))


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Which patient each study of a split belongs to; patients never cross splits."""

    patient: np.ndarray  # (n,) global patient index
    visit: np.ndarray  # (n,) 0-based study number within the patient
    study: np.ndarray  # (n,) global study index


@dataclasses.dataclass(frozen=True)
class Patients:
    """Per-patient traits, indexed by global patient index."""

    sex: np.ndarray  # 0 = F, 1 = M
    age: np.ndarray  # age at first study
    thorax: np.ndarray  # thorax width factor
    lung_height: np.ndarray
    habitus: np.ndarray  # soft-tissue thickness factor
    ctr: np.ndarray  # baseline (normal) cardiothoracic ratio
    frailty: np.ndarray  # raises the odds of every finding across the patient's studies


@dataclasses.dataclass(frozen=True)
class Studies:
    """One chunk of studies: identity, acquisition, anatomy and findings (arrays of length B)."""

    patient_id: list[str]
    study_id: list[str]
    view: np.ndarray
    sex: np.ndarray
    age: np.ndarray
    thorax: np.ndarray
    lung_height: np.ndarray
    habitus: np.ndarray
    ctr: np.ndarray  # cardiothoracic ratio as rendered (cardiomegaly included)
    rotation: np.ndarray  # radians
    shift: np.ndarray  # (B, 2) in normalised image units
    zoom: np.ndarray
    exposure: np.ndarray
    window: np.ndarray  # (B, 2) display window low / high
    gamma: np.ndarray
    noise: np.ndarray
    present: np.ndarray  # (B, 7) bool in FINDINGS order; no_finding = none of the others
    subtle: np.ndarray  # (B, 7) bool
    severity: np.ndarray  # (B, 7) float in [0, 1]
    effusion_side: np.ndarray
    pneumothorax_side: np.ndarray
    consolidation_side: np.ndarray
    consolidation_zone: np.ndarray
    consolidation_center: np.ndarray  # (B, 2) lung-local (u lateral, v down)
    lesion_side: np.ndarray
    lesion_zone: np.ndarray
    lesion_center: np.ndarray  # (B, 2) lung-local
    devices: np.ndarray  # (B, 4) bool in DEVICES order
    line_side: np.ndarray  # side of the central line's venous access

    def take(self, idx: np.ndarray) -> Studies:
        """The studies at positions idx, in that order."""
        return Studies(**{
            f.name: [getattr(self, f.name)[i] for i in idx] if f.type == "list[str]"
            else getattr(self, f.name)[idx]
            for f in dataclasses.fields(self)
        })


def _pseudonym(index: np.ndarray, prefix: str, multiplier: int, salt: int) -> list[str]:
    # An affine map that is a bijection modulo 10**8: unique, stable, not the raw index.
    codes = (index.astype(np.int64) * multiplier + salt) % 10**8
    return [f"{prefix}{c:08d}" for c in codes]


def plan_splits(counts: dict[str, int], seed: int) -> dict[str, SplitPlan]:
    """Assign whole patients (1-4 studies each) to splits; each split gets exactly counts[s]."""
    rng = np.random.default_rng([seed, 0])
    plans, next_patient, next_study = {}, 0, 0
    for split in SPLITS:
        n = counts[split]
        k = rng.choice(_STUDIES_PER_PATIENT[0], size=max(n, 1), p=_STUDIES_PER_PATIENT[1])
        cum = np.cumsum(k)
        num_patients = int(np.searchsorted(cum, n)) + 1 if n else 0
        k = k[:num_patients]
        if n:
            k[-1] -= cum[num_patients - 1] - n  # the split's last patient is cut to fit
        starts = np.cumsum(k) - k
        plans[split] = SplitPlan(
            patient=np.repeat(np.arange(num_patients), k) + next_patient,
            visit=np.arange(n) - np.repeat(starts, k),
            study=np.arange(n) + next_study,
        )
        next_patient += num_patients
        next_study += n
    return plans


def sample_patients(num_patients: int, seed: int) -> Patients:
    rng = np.random.default_rng([seed, 1])
    sex = rng.integers(0, 2, num_patients)
    return Patients(
        sex=sex,
        age=(18 + 72 * rng.beta(2.2, 1.6, num_patients)).astype(np.int32),
        thorax=np.clip(rng.normal(1.0, 0.04, num_patients) + 0.03 * sex, 0.88, 1.12),
        lung_height=np.clip(rng.normal(1.0, 0.05, num_patients), 0.85, 1.12),
        habitus=rng.uniform(0.8, 1.25, num_patients),
        ctr=rng.uniform(0.38, 0.47, num_patients),
        frailty=rng.normal(0.0, 0.5, num_patients),
    )


def _severity(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    subtle = rng.random(n) < SUBTLE_RATE
    sev = np.where(subtle, rng.uniform(0.0, SUBTLE_MAX, n), rng.uniform(CLEAR_MIN, 1.0, n))
    return subtle, sev


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _draw_findings(rng: np.random.Generator, view: np.ndarray, age: np.ndarray,
                   frailty: np.ndarray) -> np.ndarray:
    """Co-occurring findings: an acuity score (portable AP studies are sicker) raises them all."""
    b = len(view)
    acuity = rng.normal(0.0, 1.0, b) + 1.0 * (view == AP) + frailty
    older = (age - 60) / 15.0

    def draw(name: str, extra: np.ndarray | float) -> np.ndarray:
        p = 1 / (1 + np.exp(-(_logit(_BASE_RATE[name]) + extra)))
        return rng.random(b) < p

    devices = draw("support_devices", 1.1 * acuity)
    cardio = draw("cardiomegaly", 0.4 * acuity + 0.4 * older)
    effusion = draw("pleural_effusion", 0.6 * acuity + 0.9 * cardio)
    ptx = draw("pneumothorax", 0.4 * acuity + 0.7 * devices)
    cons = draw("consolidation", 0.6 * acuity + 0.4 * effusion)
    lesion = draw("lung_lesion", 0.4 * older)
    present = np.stack([np.zeros(b, bool), cardio, effusion, ptx, cons, lesion, devices], axis=1)
    present[:, F["no_finding"]] = ~present[:, 1:].any(axis=1)
    return present


def _lung_point(rng: np.random.Generator, side: np.ndarray, zone: np.ndarray | None) -> np.ndarray:
    """A point well inside a lung, in lung-local units (u lateral, v apex -1 .. base +1)."""
    b = len(side)
    v_range = np.array([[-0.65, -0.3], [-0.25, 0.2], [0.25, 0.5]])
    if zone is None:
        zone = rng.integers(0, 3, b)
    lo, hi = v_range[zone, 0], v_range[zone, 1]
    v = rng.uniform(lo, hi)
    # Upper zones are narrower (the apex is round); the left base is behind the heart medially.
    u_min = np.where((side == LEFT) & (v > 0.0), 0.3, -0.35)
    u_max = np.where(v < -0.3, 0.35, 0.6)
    u = rng.uniform(u_min, u_max)
    return np.stack([u, v], axis=1), zone


def sample_studies(plan: SplitPlan, patients: Patients, rng: np.random.Generator,
                   seed: int) -> Studies:
    """Draw the studies of one chunk of a split (plan rows already sliced to the chunk)."""
    b = len(plan.study)
    pat = plan.patient
    view = rng.choice(3, size=b, p=[0.58, 0.32, 0.10])
    age = (patients.age[pat] + 2 * plan.visit).astype(np.int32)
    present = _draw_findings(rng, view, age, patients.frailty[pat])
    subtle, severity = _severity(rng, b * 7)
    subtle = subtle.reshape(b, 7) & present
    severity = severity.reshape(b, 7) * present
    subtle[:, F["no_finding"]] = False
    severity[:, F["no_finding"]] = 0.0

    # Cardiomegaly: CTR just over 0.5 when subtle, up to ~0.72 when severe; normal hearts < 0.5.
    cardio = present[:, F["cardiomegaly"]]
    ctr = np.where(cardio, 0.51 + 0.21 * severity[:, F["cardiomegaly"]], patients.ctr[pat])

    eff_side = rng.choice(3, size=b, p=[0.35, 0.30, 0.35])
    cons_side = rng.choice(2, size=b, p=[0.55, 0.45])
    cons_zone = rng.choice(3, size=b, p=[0.25, 0.25, 0.5])
    cons_center, _ = _lung_point(rng, cons_side, cons_zone)
    lesion_side = rng.integers(0, 2, b)
    lesion_center, lesion_zone = _lung_point(rng, lesion_side, None)

    devices = rng.random((b, 4)) < np.array([0.45, 0.55, 0.4, 0.2])
    devices[~devices.any(axis=1), 1] = True  # at least one device when present
    # A subtle device finding is a single faint line (a central line or an enteric tube).
    lone = np.where(rng.random(b) < 0.5, 1, 2)
    dev_subtle = subtle[:, F["support_devices"]]
    devices[dev_subtle] = False
    devices[dev_subtle, lone[dev_subtle]] = True
    devices &= present[:, F["support_devices"], None]

    return Studies(
        patient_id=_pseudonym(pat, "p", 2654435761, 7919 * seed + 1),
        study_id=_pseudonym(plan.study, "s", 1103515245, 104729 * seed + 3),
        view=view,
        sex=patients.sex[pat],
        age=age,
        thorax=patients.thorax[pat],
        lung_height=patients.lung_height[pat] * np.where(view == AP, 0.93, 1.0),
        habitus=patients.habitus[pat],
        ctr=ctr,
        rotation=np.deg2rad(rng.uniform(-5, 5, b)),
        shift=rng.uniform(-0.06, 0.06, (b, 2)),
        zoom=rng.uniform(0.9, 1.04, b),
        exposure=rng.uniform(1.1, 1.6, b),
        window=np.stack([rng.uniform(0.0, 0.08, b), rng.uniform(0.9, 1.0, b)], axis=1),
        gamma=rng.uniform(0.8, 1.25, b),
        noise=rng.uniform(0.01, 0.035, b),
        present=present,
        subtle=subtle,
        severity=severity,
        effusion_side=eff_side,
        pneumothorax_side=rng.integers(0, 2, b),
        consolidation_side=cons_side,
        consolidation_zone=cons_zone,
        consolidation_center=cons_center,
        lesion_side=lesion_side,
        lesion_zone=lesion_zone,
        lesion_center=lesion_center,
        devices=devices,
        line_side=rng.choice(2, size=b, p=[0.7, 0.3]),
    )
