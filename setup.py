"""Build hook: compiles the native fast path (native/) with cffi in API mode."""

from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
