# Only the compiled extensions live here; metadata is in pyproject.toml.
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("HASHRING_DEBUG") == "1"

directives = {
    "language_level": 3,
    "embedsignature": True,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
}
compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
if os.environ.get("HASHRING_MARCH"):
    compile_args.append("-march=" + os.environ["HASHRING_MARCH"])


def ext(name):
    return Extension(
        f"hashring.{name}",
        [f"hashring/{name}.pyx"],
        include_dirs=["hashring"],
        extra_compile_args=compile_args,
    )


setup(
    ext_modules=cythonize(
        [ext("_hashes"), ext("_ring"), ext("_logbuf")],
        compiler_directives=directives,
        annotate=os.environ.get("HASHRING_ANNOTATE") == "1",
    ),
)
