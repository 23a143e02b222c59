"""Training commands written in the docs, split into launcher, target module and arguments.

Commands are read from CLAUDE.md, README*, docs/*.md (fenced blocks), Makefile
recipes and *.sh scripts. A command is a line such as
`torchrun --nproc-per-node 2 -m pkg.train --lr 3e-4` or
`python -c "from pkg.train import main; main(lr=0.01)"`. The launcher prefix
(`torchrun --nproc-per-node 2`) feeds the runner default, the target feeds
the entry point, the arguments feed cli_args.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field

from arunner.core.config import LAUNCHERS, PYTHON_RE

from .sources import Project, scalar

FENCE_RE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
HEADING_RE = re.compile(r"^#+\s*(.+)$", re.M)
CONFIG_FILE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml")  # positional config files kept as {path: True}
MAX_DOCS = 10
LAUNCHER_MODULES = ("torch.distributed.run", "torch.distributed.launch")
CONTROL_WORDS = ("&&", "||", ";", "|", "&")  # the command ends at the first of these
REDIRECT_RE = re.compile(r"^(\d*|&)(>>?|<)(&\d+)?(.*)$")  # > log, >log, 2>&1, &>log, < in.txt


def shell_words(line: str) -> list[str]:
    """The words of the first command on a shell line: no comment, no redirection, nothing after && ; |."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    skip_target = False
    for word in lexer:
        if word in CONTROL_WORDS or word.startswith(("&&", "||", ";", "|")):
            break
        if skip_target:
            skip_target = False
            continue
        m = REDIRECT_RE.match(word)
        if m and word not in ("<", "") and (m.group(2) and (m.group(1) or word.startswith(("<", ">")))):
            skip_target = not m.group(3) and not m.group(4)  # `> log`: the next word is the target
            continue
        words.append(word)
    return words


@dataclass
class Command:
    line: str
    heading: str
    prefix: list[str] = field(default_factory=list)  # launcher words, e.g. ["torchrun", "--nproc-per-node", "2"]
    module: str = ""  # dotted target module
    args: dict | list = field(default_factory=dict)  # {name: value} or hydra ["k=v", ...]
    source: str = ""  # the file it was written in

    @property
    def trainy(self) -> bool:
        return "train" in self.module.lower() or "train" in self.heading.lower()


def parse_args(words: list[str]) -> dict | list:
    """`--k v`, `--k=v`, bare `--flag` -> a mapping; hydra `k=v` words -> a list of strings."""
    if words and all("=" in w and not w.startswith("-") for w in words):
        return list(words)
    out: dict = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") and word.endswith(CONFIG_FILE_SUFFIXES):
            out[word] = True  # a positional config file (`train.py config/small.py`): train.py passes it as is
            continue
        if not word.startswith("--") or len(word) == 2:
            continue  # another positional: cli_args cannot express it
        name, eq, value = word[2:].partition("=")
        if eq:
            out[name] = scalar(value)
            continue
        values = []
        while i < len(words) and not words[i].startswith("--"):
            values.append(scalar(words[i]))
            i += 1
        out[name] = True if not values else values[0] if len(values) == 1 else values
    return out


def _from_code(code: str) -> tuple[str, dict]:
    """`python -c` code: the module of the imported function it calls, and that call's literal keywords."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "", {}
    origin = {
        a.asname or a.name: n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module
        for a in n.names
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in origin:
            kwargs = {}
            for kw in node.keywords:
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    continue
            return origin[node.func.id], kwargs
    return "", {}


def split(line: str, heading: str, project: Project, source: str = "") -> Command | None:
    """One shell line as a Command, or None when it runs no Python target."""
    try:
        words = shell_words(line)
    except ValueError:
        return None
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words.pop(0)  # CUDA_VISIBLE_DEVICES=0 and friends
    if not words:
        return None
    cmd = Command(line=line, heading=heading, source=source)
    first = words[0].rsplit("/", 1)[-1]
    launcher = first in LAUNCHERS or first == "uv" or PYTHON_RE.fullmatch(first)
    if not launcher:
        return None
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-m", "--module") and i + 1 < len(words):
            if words[i + 1] in LAUNCHER_MODULES:  # python -m torch.distributed.run ... script.py
                cmd.prefix += words[i : i + 2]
                i += 2
                continue
            cmd.module, rest = words[i + 1], words[i + 2 :]
            break
        if word == "-c" and i + 1 < len(words):
            cmd.module, cmd.args = _from_code(words[i + 1])
            return cmd if cmd.module else None
        if word.endswith(".py"):
            path = word[2:] if word.startswith("./") else word
            here = source.rsplit("/", 1)[0] if "/" in source else ""
            if here and not (project.root / path).is_file() and (project.root / here / path).is_file():
                path = f"{here}/{path}"  # `python chars.py` in projects/chars/README.md runs from that folder
            cmd.module, rest = project.dotted(path) or "", words[i + 1 :]
            break
        cmd.prefix.append(word)
        i += 1
    else:  # no -m, -c or .py target on the line
        return None
    if cmd.prefix and cmd.prefix[0] == "uv" and not any(PYTHON_RE.fullmatch(w) for w in cmd.prefix):
        cmd.prefix.append("python")  # `uv run train.py` runs the file with uv's python
    cmd.args = parse_args(rest)
    return cmd if cmd.module else None


def _doc_rank(rel: str) -> tuple:
    """CLAUDE.md first, then README, docs/, scripts; shallow before deep."""
    name = rel.rsplit("/", 1)[-1].lower()
    kind = 0 if name == "claude.md" else 1 if name.startswith("readme") else 2 if name.endswith(".md") else 3
    return (rel.count("/"), kind, rel)


def _blocks(rel: str, text: str):
    """(heading, code) pairs: fenced blocks of a Markdown file, the whole text of a script or Makefile."""
    if not rel.lower().endswith((".md", ".rst", ".txt")):
        yield rel.rsplit("/", 1)[-1], text
        return
    for block in FENCE_RE.finditer(text):
        headings = HEADING_RE.findall(text[: block.start()])
        yield (headings[-1] if headings else ""), block.group(1)


def from_docs(project: Project) -> list[Command]:
    """Every Python command in the project's docs (fenced blocks), Makefile and shell scripts, root first."""
    found: list[Command] = []
    docs = sorted(project.tree.docs, key=_doc_rank)
    for rel in docs[:MAX_DOCS]:
        text = project.read(rel, limit=256 * 1024) or ""
        for heading, code in _blocks(rel, text):
            body = code.replace("\\\n", " ")
            for line in body.splitlines():
                line = line.strip().removeprefix("$ ").strip()
                if line and not line.startswith("#"):
                    cmd = split(line, heading, project, rel)
                    if cmd:
                        found.append(cmd)
    # training commands first, in document order otherwise
    return sorted(found, key=lambda c: not c.trainy)
