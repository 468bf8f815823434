"""Replace one generated section of benchmarks/RESULTS.md between its own markers, keeping the rest."""
import os


def replace_section(path, name, text):
    """Write `text` between `<!-- name: start -->` and `<!-- name: end -->` in `path` (appended at the end the
    first time), atomically."""
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    existing = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if start in existing:
        head, rest = existing.split(start, 1)
        tail = rest.split(end, 1)[1] if end in rest else "\n"
    else:
        head, tail = existing.rstrip("\n") + "\n\n", "\n"
    with open(path + ".new", "w") as out:
        out.write(head + start + "\n" + text.rstrip("\n") + "\n" + end + tail)
    os.replace(path + ".new", path)
