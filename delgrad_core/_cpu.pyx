"""The CPU features the compiled kernels need, and whether this CPU has them (see _cpu.h.in)."""

cdef extern from "_cpu.h":
    const char *delgrad_missing_cpu_feature()
    const char *DELGRAD_CPU_FEATURES

__all__ = ["required_features", "missing_feature"]


def required_features():
    """The features (GCC's names, e.g. "avx2") the kernels were compiled to use."""
    return DELGRAD_CPU_FEATURES.decode().split()


def missing_feature():
    """The first of `required_features()` this CPU lacks, or None."""
    cdef const char *name = delgrad_missing_cpu_feature()
    return None if name == NULL else name.decode()
