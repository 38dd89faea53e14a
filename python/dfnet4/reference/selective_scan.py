"""Placeholder until the selective_scan implementation lands (being written now)."""


def selective_scan(*args, **kwargs):
    raise NotImplementedError("dfnet4: reference.selective_scan.selective_scan is not implemented yet")
