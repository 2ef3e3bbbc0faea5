"""Fixtures: fake manual folders of each data set (see fake_data.py)."""

from pathlib import Path

import pytest

from fake_data import make_chexpert, make_mimic, make_nih


@pytest.fixture
def chexpert_dir(tmp_path) -> Path:
    root = tmp_path / "CheXpert-v1.0-small"
    make_chexpert(root)
    return root


@pytest.fixture
def mimic_dir(tmp_path) -> Path:
    root = tmp_path / "mimic-cxr-jpg"
    make_mimic(root)
    return root


@pytest.fixture
def nih_dir(tmp_path) -> Path:
    root = tmp_path / "nih"
    make_nih(root)
    return root
