"""Subcommands of `rsir`, one module each (discovered by rsir.cli)."""


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """KEY=VALUE strings from repeated --option flags as a dict."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            from rsir.errors import RsirError

            raise RsirError(f"--option {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out
