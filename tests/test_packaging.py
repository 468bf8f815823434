"""pyproject.toml lists every package, so that a regular (non-editable) install or a wheel holds them all."""
import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _packages_on_disk():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        setuptools = tomllib.load(file)["tool"]["setuptools"]
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            if "__init__.py" in files:
                relative = os.path.relpath(directory, os.path.join(ROOT, folder))
                found.add(name if relative == "." else name + "." + relative.replace(os.sep, "."))
    return found, set(setuptools["packages"])


def test_every_package_directory_is_listed():
    on_disk, listed = _packages_on_disk()
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "listed in pyproject.toml but missing on disk"
