"""Placeholder until the gru implementation lands (being written now)."""


def gru(*args, **kwargs):
    raise NotImplementedError("dfnet4: reference.gru.gru is not implemented yet")
