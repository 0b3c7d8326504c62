"""Lines of outside text searched in bounded slices: one 64 MB line must cost linear time."""


def pieces(line: bytes, size: int) -> list[bytes]:
    """`line` cut into slices of at most `size` bytes (one slice when it is short)."""
    if len(line) <= size:
        return [line]
    return [line[i : i + size] for i in range(0, len(line), size)]
