"""The contract lives in the repository: every `SPEC §N` (and `DESIGN §N`) that code, tests,
configs, launch scripts or the README cite names a section of docs/SPEC.md (docs/DESIGN.md), the
sections keep their subjects, and the README links the file with anchors that exist."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "docs" / "SPEC.md"
# Where citations live (README.md besides).
SCANNED = ("coderl_jax", "tests", "configs", "launch", "docs")
SUFFIXES = {".py", ".md", ".sh", ".sbatch"}
SKIPPED = {REPO / "tests" / "data"}  # fixtures: problem texts, not citations
# `SPEC §4`, `SPEC §3/§4`, `SPEC §3-§4`, `docs/SPEC.md §6`, `[SPEC §8](docs/SPEC.md#...)`
CITATION = re.compile(r"\b(SPEC|DESIGN)(?:\.md)?\]?\s+§(\d+)((?:\s*[-–/,]\s*§?\d+)*)")
HEADING = re.compile(r"^## (\d+)\. (.+)$", re.M)
# The subject each section must keep: the citations in the code rely on this numbering.
SUBJECTS = {1: "set-up", 2: "command line", 3: "rows", 4: "outcome codes", 5: "rewards",
            6: "prompt", 7: "models", 8: "demo"}


def cited_sections(text: str) -> list[tuple[str, int]]:
    """(document, section) for each section a text cites; a range `§3-§5` cites 3, 4 and 5."""
    out = []
    for m in CITATION.finditer(text):
        doc, first, rest = m.group(1), int(m.group(2)), m.group(3)
        numbers = [first]
        for sep, n in re.findall(r"([-–/,])\s*§?(\d+)", rest):
            n = int(n)
            numbers += range(numbers[-1] + 1, n + 1) if sep in "-–" else [n]
        out += [(doc, n) for n in numbers]
    return out


def sections(path: Path) -> dict[int, str]:
    return {int(n): title for n, title in HEADING.findall(path.read_text(encoding="utf-8"))}


def scanned_files() -> list[Path]:
    files = [REPO / "README.md"]
    for top in SCANNED:
        files += [p for p in sorted((REPO / top).rglob("*"))
                  if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
                  and not any(p.is_relative_to(d) for d in SKIPPED)]
    return [p for p in files if p != Path(__file__).resolve()]  # this file's examples aside


def all_citations() -> list[tuple[str, str, int]]:
    """(file:line, document, section) of every citation in the scanned files."""
    found = []
    for path in scanned_files():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(lines, 1):
            where = f"{path.relative_to(REPO)}:{lineno}"
            found += [(where, doc, n) for doc, n in cited_sections(line)]
    return found


def test_citation_parser():
    assert cited_sections("rows (SPEC §3/§4), see SPEC §3-§5 and docs/SPEC.md §6") == [
        ("SPEC", 3), ("SPEC", 4), ("SPEC", 3), ("SPEC", 4), ("SPEC", 5), ("SPEC", 6)]
    assert cited_sections("[SPEC §8](docs/SPEC.md#8-the-demo); DESIGN §2") == [
        ("SPEC", 8), ("DESIGN", 2)]
    assert cited_sections("SPECIAL §1, the SPEC §N convention, CodeRL §3.3") == []


def test_spec_sections_are_numbered_in_order_and_keep_their_subjects():
    found = sections(SPEC)
    assert list(found) == list(range(1, len(found) + 1)), found
    for n, subject in SUBJECTS.items():
        assert subject in found.get(n, "").lower(), (n, found.get(n), subject)


def test_every_citation_names_an_existing_section():
    citations = all_citations()
    assert len([c for c in citations if c[1] == "SPEC"]) >= 40  # the scan does find them
    known = {"SPEC": sections(SPEC)}
    design = REPO / "docs" / "DESIGN.md"
    if design.is_file():
        known["DESIGN"] = sections(design)
    bad = [f"{where}: {doc} §{n}" for where, doc, n in citations
           if n not in known.get(doc, {})]
    assert not bad, "citations of sections that do not exist:\n" + "\n".join(bad)


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_readme_links_the_spec_with_existing_anchors():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "](docs/SPEC.md)" in readme
    anchors = {github_anchor(f"{n}. {t}") for n, t in sections(SPEC).items()}
    linked = re.findall(r"\]\(docs/SPEC\.md#([^)]+)\)", readme)
    assert linked
    assert set(linked) <= anchors, set(linked) - anchors


def test_spec_cross_references_resolve():
    text = SPEC.read_text(encoding="utf-8")
    refs = {int(n) for n in re.findall(r"§(\d+)", text)}
    assert refs and refs <= set(sections(SPEC)), refs - set(sections(SPEC))


def test_package_says_where_spec_lives():
    assert "docs/SPEC.md" in (REPO / "coderl_jax" / "__init__.py").read_text(encoding="utf-8")
