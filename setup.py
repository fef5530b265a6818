"""Finds every package, so none is left out of the wheel: ``alexnet`` and its subpackages under
``src/``, ``twogpu`` and its subpackages at the top level (metadata: ``setup.cfg``)."""

from setuptools import find_packages, setup

ROOTS = {"alexnet": "src/alexnet", "twogpu": "twogpu"}

setup(
    package_dir=ROOTS,
    packages=[
        name
        for top, folder in ROOTS.items()
        for name in (top, *(f"{top}.{p}" for p in find_packages(folder)))
    ],
)
