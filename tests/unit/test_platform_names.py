"""The harness (bench/) and the report (reporting/) never name a platform: platforms describe themselves.

Every file under bench/ and reporting/ is read (Python, YAML, Jinja templates); a hit fails the test
naming file:line. The names: every registered platform (runtime.platform.PLATFORMS keys), the
production runtimes whether registered yet or not (docker, lxc, gvisor, runsc, crun, runc), and the
kind names (runtime.platform.KINDS: native, container, sandboxed container, vm), because three of the
kinds are also platform names and a literal cannot say which one it means. A name matches as a whole
word or identifier, any case, optionally plural (`VMs`): `vm` inside `kvm`, `vmstat` or `vm_defaults`,
and `container` inside `container-userns`, do not match `vm` or `container`.

Rules, by where the name stands:
- Python string literals other than docstrings (keys, comparisons, help text, HTML the report
  writes): no name at all, kind or platform. Code compares kinds through runtime.platform's KIND_*
  constants and PlatformInfo (kind, baseline, role), and text that must name a platform or kind is
  built from PlatformInfo or from KINDS / the registry.
- Python identifiers: none equal to a name (a variable `vm`); no `_`-separated part that is a
  platform-only name (`docker_client`). Kind words as parts are allowed (`KIND_VM`, `ratio_to_native`):
  an identifier may be about a kind.
- Comments and docstrings are prose for developers: the kind words are allowed there (the judgement
  call: "a VM's own kernel", "native runs nothing between commands" speak of kinds, and forbidding
  them would only make the prose worse), platform-only names are not (no "crun" in a comment: what
  crun does is crun's module's business).
- Jinja templates: their text is the report; no name at all, anywhere in the file.
- YAML: every scalar is a literal (no name), except (a) the fields of reporting/claims.yaml whose
  schema says they hold a kind, `kind` and `versus`, whose values must be one of KINDS (or
  "baseline", or a variant mapping): claims are about kinds, never about a platform; and (b) the
  citation fields of a claim (id, claim, source, published, setting, testable.note), which quote the
  literature ("Docker 1.0 era", "runsc vs runc") and are not read by code.

Exempt files: tools whose subject is one named platform by design, not the harness or the report:
bench/overhead.py (the native cpu cell directly vs through the harness), bench/devicefilter.py (our
container runtime's cgroup device filter), bench/v2guest.py (our container tests in a VM guest) and
any bench/*bench.py.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import yaml

from runtime.platform import KINDS, PLATFORMS, ROLE_OURS, ROLE_REFERENCE, load_platform

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("bench", "reporting")
EXEMPT = ("bench/overhead.py", "bench/devicefilter.py", "bench/v2guest.py")
PRODUCTION_RUNTIMES = ("docker", "lxc", "gvisor", "runsc", "crun", "runc")
PLATFORM_NAMES = frozenset(PLATFORMS) | frozenset(PRODUCTION_RUNTIMES)
PLATFORM_ONLY = PLATFORM_NAMES - frozenset(KINDS)
ALL_NAMES = PLATFORM_NAMES | frozenset(KINDS)
CITATION_FIELDS = frozenset({"id", "claim", "source", "published", "setting", "note"})
KIND_FIELDS = frozenset({"kind", "versus"})


def _words(names: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternatives})s?(?![\w]|-\w)", re.I)


ANY_NAME = _words(ALL_NAMES)
PLATFORM_ONLY_NAME = _words(PLATFORM_ONLY)


def _docstring_lines(source: str) -> set[int]:
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.add(first.lineno)
    return lines


def python_hits(source: str) -> Iterator[tuple[int, str]]:
    docstrings = _docstring_lines(source)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        text, line = token.string, token.start[0]
        if token.type == tokenize.COMMENT or (token.type == tokenize.STRING and line in docstrings):
            match = PLATFORM_ONLY_NAME.search(text)
        elif token.type == tokenize.STRING:
            match = ANY_NAME.search(text)
        elif token.type == tokenize.NAME:
            parts = text.lower().split("_")
            match = text.lower() in ALL_NAMES or any(p in PLATFORM_ONLY for p in parts)
        else:
            continue
        if match:
            yield line, text


def _yaml_hits(node: yaml.Node, key: str | None = None) -> Iterator[tuple[int, str]]:
    line = node.start_mark.line + 1
    if key in CITATION_FIELDS:
        return
    if key in KIND_FIELDS:
        if isinstance(node, yaml.ScalarNode) and node.value not in (*KINDS, "baseline"):
            yield line, f"{key}: {node.value} is not a kind ({', '.join(KINDS)})"
        if isinstance(node, yaml.MappingNode):  # versus: {variant: {...}}
            for k, v in node.value:
                yield from _yaml_hits(k)
                yield from _yaml_hits(v, k.value)
        return
    if isinstance(node, yaml.ScalarNode):
        if ANY_NAME.search(str(node.value)):
            yield line, str(node.value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _yaml_hits(item)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            yield from _yaml_hits(k)
            yield from _yaml_hits(v, k.value if isinstance(k, yaml.ScalarNode) else None)


def yaml_hits(source: str) -> Iterator[tuple[int, str]]:
    for document in yaml.compose_all(source):
        if document is not None:
            yield from _yaml_hits(document)


def text_hits(source: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source.splitlines(), start=1):
        if ANY_NAME.search(line):
            yield number, line


CHECKS = {".py": python_hits, ".yaml": yaml_hits, ".yml": yaml_hits, ".j2": text_hits, ".html": text_hits}


def offending_lines() -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            relative = str(path.relative_to(ROOT))
            check = CHECKS.get(path.suffix)
            if check is None or relative in EXEMPT or (folder == "bench" and path.name.endswith("bench.py")):
                continue
            found += [f"{relative}:{line}: {text.strip()[:120]}" for line, text in check(path.read_text())]
    return found


def test_matching_is_strict_on_code_and_lenient_on_kind_words_in_prose():
    def hits(source: str) -> int:
        return len(list(python_hits(source)))

    assert hits('if name == "vm":\n    pass\n') == 1 and hits("x = 'Docker defaults'\n") == 1
    assert hits('x = f"{a} on the VMs"\n') == 1 and hits("vm = make()\n") == 1 and hits("crun_path = 1\n") == 1
    assert hits('x = "ratio_to_native"\n') == 0 and hits('x = "vm_defaults kvm vmstat"\n') == 0
    assert hits("KIND_VM = 1\n") == 0
    assert hits('"""A VM\'s own kernel; native runs nothing."""\n# a container\n') == 0
    assert hits('"""What runc does."""\n') == 1 and hits("x = 1  # as gVisor does\n") == 1
    assert hits('x = "container-userns"\n') == 1 and hits('x = "sandboxed container"\n') == 1


def test_yaml_claims_name_kinds_only_where_the_schema_says_kind():
    good = "- id: G4-runsc\n  claim: runsc vs runc\n  kind: sandboxed container\n  versus: container\n" \
           "  testable: {needs: [kvm], note: Docker 1.0 era}\n"
    assert list(yaml_hits(good)) == []
    assert [line for line, _ in yaml_hits("- kind: runc\n  metric: x\n  variant: {engine: docker}\n")] == [1, 3]


def test_harness_and_report_name_no_platform():
    assert offending_lines() == []


def test_every_registered_platform_describes_itself_and_declares_options():
    from bench.config import RunConfig

    config_fields = set(RunConfig.__dataclass_fields__)
    for name in PLATFORMS:
        platform = load_platform(name, image=None)
        assert set(platform.options) <= config_fields, name
        info = platform.describe()
        assert info.name == name and info.colour.startswith("#")
    baselines = [n for n in PLATFORMS if load_platform(n, image=None).describe().baseline]
    assert len(baselines) == 1
    roles = {load_platform(n, image=None).describe().role for n in PLATFORMS}
    assert {ROLE_OURS, ROLE_REFERENCE} <= roles  # the calibration has a subject and references
