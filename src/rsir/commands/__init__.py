"""Subcommands of `rsir`, one module each (discovered by rsir.cli)."""


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """KEY=VALUE strings from repeated --option flags as a dict (a key given twice is an error)."""
    from rsir.errors import RsirError

    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise RsirError(f"--option {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        k = k.strip()
        if k in out and out[k] != v.strip():
            raise RsirError(f"--option {k} given twice ({out[k]!r} and {v.strip()!r})")
        out[k] = v.strip()
    return out
