"""Seeds: which seed a repeat or confirmation run gets, and "a changed seed is not an improvement".

Stdlib only. A seed-like name is `seed`, `random_seed` or anything ending in
`_seed` (`data_seed`, `trainer.seed` for a dotted Hydra key), case-insensitive.
"""

from __future__ import annotations

import ast

SEED_ENV = "AR_SEED"  # every repeat and confirmation gets its seed here, whether or not the host takes one
SEED_CALLS = {  # calls whose arguments are seeds: torch, random, numpy, transformers, lightning, jax
    "manual_seed",
    "manual_seed_all",
    "seed",
    "set_seed",
    "seed_everything",
    "set_random_seed",
    "default_rng",
    "RandomState",
    "Random",
    "PRNGKey",
}
NOTE_NAME = "RUN_NOTE"  # free text: never part of what a candidate changes
OVERRIDES_NAME = "CLI_OVERRIDES"
_PLACEHOLDER = "<seed>"


def is_seed_name(name) -> bool:
    last = str(name).lstrip("-+~").rsplit(".", 1)[-1].lower()
    return last == "seed" or last.endswith("_seed")


def _override_keys(overrides) -> list[str]:
    """Keys of CLI_OVERRIDES: a dict's keys, or the `key=value` strings of a Hydra list."""
    if isinstance(overrides, dict):
        return [str(k) for k in overrides]
    keys = []
    for item in overrides or []:
        if isinstance(item, str) and "=" in item:
            keys.append(item.split("=", 1)[0])
    return keys


def seed_key(overrides, host_options=()) -> str | None:
    """The override key that sets the host's seed: one already in CLI_OVERRIDES, else a host option; None if none.

    `seed` wins over other seed-like names (a host with `seed` and `data_seed` varies `seed`).
    """
    for names in (_override_keys(overrides), [str(o).lstrip("-") for o in host_options]):
        found = [n for n in names if is_seed_name(n)]
        if found:
            exact = [n for n in found if n.lstrip("+~").rsplit(".", 1)[-1].lower() == "seed"]
            return (exact or found)[0]
    return None


def base_seed(overrides, key: str | None) -> int:
    """The seed the best's own run used when CLI_OVERRIDES sets it to an integer, else 0."""
    if key is None:
        return 0
    if isinstance(overrides, dict):
        value = overrides.get(key)
    else:
        value = next(
            (i.split("=", 1)[1] for i in overrides or [] if isinstance(i, str) and i.split("=", 1)[0] == key), None
        )
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def seed_for(attempt: int, base: int = 0) -> int:
    """The seed of the attempt-th run of one train.py (0 = the run as written, 1, 2, ... = repeats)."""
    return base + attempt


def with_seed(overrides, key: str, seed: int):
    """A copy of CLI_OVERRIDES with the seed set (a dict entry, or a `key=value` item of a Hydra list)."""
    if isinstance(overrides, dict):
        out = dict(overrides)
        out[key] = seed
        return out
    items = list(overrides or [])
    bare = key.lstrip("+~")
    for i, item in enumerate(items):
        if isinstance(item, str) and item.split("=", 1)[0].lstrip("+~") == bare:
            items[i] = f"{item.split('=', 1)[0]}={seed}"
            return items
    return [*items, f"{key}={seed}"]


def seed_run(overrides, attempt: int, host_options=()) -> tuple[dict, object]:
    """(extra environment, overrides) for the attempt-th run: AR_SEED always, the host's seed option when it has one."""
    key = seed_key(overrides, host_options)
    seed = seed_for(attempt, base_seed(overrides, key))
    env = {SEED_ENV: str(seed)}
    if key is None or attempt == 0:
        return env, overrides
    return env, with_seed(overrides, key, seed)


# ----------------------------------------------------------------------------- seed-only changes


class _Blank(ast.NodeTransformer):
    """Replace every seed value (and RUN_NOTE) by a placeholder, so two sources compare equal iff the rest is."""

    def _blank(self):
        return ast.Constant(_PLACEHOLDER)

    def visit_Assign(self, node):
        self.generic_visit(node)
        if any(_target_name(t) == NOTE_NAME or is_seed_name(_target_name(t) or "") for t in node.targets):
            node.value = self._blank()
        return node

    def visit_AnnAssign(self, node):
        self.generic_visit(node)
        name = _target_name(node.target) or ""
        if node.value is not None and (name == NOTE_NAME or is_seed_name(name)):
            node.value = self._blank()
        return node

    def visit_Dict(self, node):
        self.generic_visit(node)
        for i, key in enumerate(node.keys):
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and is_seed_name(key.value):
                node.values[i] = self._blank()
        return node

    def visit_Constant(self, node):
        # a Hydra override string "trainer.seed=3"
        if isinstance(node.value, str) and "=" in node.value and is_seed_name(node.value.split("=", 1)[0]):
            return ast.Constant(node.value.split("=", 1)[0] + "=" + _PLACEHOLDER)
        return node

    def visit_keyword(self, node):
        self.generic_visit(node)
        if node.arg and is_seed_name(node.arg):
            node.value = self._blank()
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in SEED_CALLS:
            node.args = [self._blank() for _ in node.args]
        return node


def _target_name(target) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript):  # CLI_OVERRIDES["seed"] = 3
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
    return None


def _without_note(tree) -> str:
    """The tree's dump with RUN_NOTE's value blanked, in place (a changed note is not a changed program)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_target_name(t) == NOTE_NAME for t in targets) and node.value is not None:
                node.value = ast.Constant(_PLACEHOLDER)
    return ast.dump(tree, include_attributes=False)


def _without_seeds(tree) -> str:
    """The tree's dump with every seed value (and RUN_NOTE) blanked, in place."""
    return ast.dump(_Blank().visit(tree), include_attributes=False)


def not_an_improvement(candidate_source: str, best_source: str) -> str | None:
    """Why this candidate cannot be an improvement over the best, or None when it may be.

    It cannot when train.py differs from the best's snapshot only in seed values
    (seed-like CLI_OVERRIDES entries, assignments to seed-like names, seed
    keywords, torch.manual_seed / random.seed / np.random.seed arguments) or not
    at all (RUN_NOTE and comments aside). Only for a new candidate: the baseline's
    repeats and confirmation runs are re-runs on purpose. A source that does not
    parse is left to the run (it will crash with the real error).
    """
    if candidate_source == best_source:
        return "train.py is the best's code (RUN_NOTE aside): a re-run measures noise, not an improvement"
    try:
        candidate, best = ast.parse(candidate_source), ast.parse(best_source)
    except (SyntaxError, ValueError):
        return None
    # Both trees are changed in place (no deep copies: they cost more than the parse), note first, then seeds.
    if _without_note(candidate) == _without_note(best):
        return "train.py is the best's code (RUN_NOTE aside): a re-run measures noise, not an improvement"
    if _without_seeds(candidate) == _without_seeds(best):
        return "only a seed changed from the best: a lucky seed is not an improvement"
    return None
