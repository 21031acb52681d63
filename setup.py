"""Kirby's one compiled module: the order books' per-level loops (kirby_core/books/_levels.c).
Everything else is declared in pyproject.toml. Building it needs a C compiler and Python's
headers (Debian: gcc and python3-dev; the python:3.11 images have the headers)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("kirby_core.books._levels", ["kirby_core/books/_levels.c"])])
