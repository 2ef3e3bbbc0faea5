"""Zero-shot prompt sets: JSON files of hand-written sentences that state each finding and
sentences that deny it, scored one set at a time by the zeroshot_prompts evaluator, so a
zero-shot AUROC can be checked against wordings other than the training reports' own:

    {"_comment": "keys starting with _ are ignored",
     "pleural_effusion": {"positive": ["Fluid layers in the pleural space.", ...],
                          "negative": ["Pleural fluid is absent.", ...]}, ...}

A set is named by its file's stem (`heldout_cxr.json` -> `heldout_cxr`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radfm_jax.errors import ConfigError

_SIDES = ("positive", "negative")


@dataclasses.dataclass(frozen=True)
class PromptSet:
    name: str  # the file's stem: `<set>` in the metric keys
    path: Path
    pairs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # finding -> (positive, negative)


def _no_duplicate_keys(items: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep only the last of two entries for one finding, silently.
    keys = [key for key, _ in items]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"duplicate keys {repeated}")
    return dict(items)


def _sentences(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of sentences, got {json.dumps(value)}")
    bad = [item for item in value if not isinstance(item, str) or not item.strip()]
    if bad:
        raise ValueError(f"{where} holds {json.dumps(bad)}; every item must be a non-blank string")
    return tuple(value)


def _parse(data: Any) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    if not isinstance(data, dict):
        raise ValueError(f"the top level must be an object of findings, got {type(data).__name__}")
    pairs = {}
    for finding, entry in data.items():
        if finding.startswith("_"):
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"'{finding}' must be an object with 'positive' and 'negative' lists")
        keys = {key for key in entry if not key.startswith("_")}
        if keys != set(_SIDES):
            raise ValueError(f"'{finding}' has keys {sorted(keys)}; it needs exactly 'positive' and 'negative'")
        pairs[finding] = tuple(_sentences(entry[side], f"'{finding}.{side}'") for side in _SIDES)
    if not pairs:
        raise ValueError("it names no findings")
    return pairs


def load_prompt_set(path: str | Path) -> PromptSet:
    """One prompt set file, checked; every problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt set file '{path}' not found (eval.prompt_sets)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise ConfigError(f"prompt set '{path}' is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"prompt set '{path}' is not valid JSON: {err.msg} at line {err.lineno} "
                          f"column {err.colno}") from None
    except ValueError as err:
        raise ConfigError(f"prompt set '{path}': {err}") from None
    try:
        pairs = _parse(data)
    except ValueError as err:
        raise ConfigError(f"prompt set '{path}': {err}; see evals/prompt_sets.py for the format") from None
    return PromptSet(path.stem, path, pairs)


def load_prompt_sets(paths: Sequence[str | Path]) -> list[PromptSet]:
    """The sets of eval.prompt_sets, in order; two files with one stem would share metric keys."""
    sets = [load_prompt_set(path) for path in paths]
    by_name: dict[str, list[str]] = {}
    for prompt_set in sets:
        by_name.setdefault(prompt_set.name, []).append(str(prompt_set.path))
    clashes = {name: files for name, files in by_name.items() if len(files) > 1}
    if clashes:
        raise ConfigError(f"prompt sets are named by their file's stem, and these share one: {clashes}; "
                          "rename a file")
    return sets


def check_findings(prompt_set: PromptSet, label_names: Sequence[str]) -> None:
    """A set may leave out some of the data set's findings, but not name others."""
    unknown = sorted(set(prompt_set.pairs) - set(label_names))
    if unknown:
        raise ConfigError(f"prompt set '{prompt_set.path}' names findings {unknown} that the data set does not "
                          f"label; its labels are {list(label_names)}")
