

import argparse as _argparse


class DefaultsHelp(_argparse.HelpFormatter):
    """Help that shows each option's default, unless it has none or the text already says."""

    def _get_help_string(self, action: _argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False
                or default == _argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def chip_or_system(args):  # noqa: ANN001, ANN201
    """(chip, system or None) of a command's --chip / --system options."""
    from hardware.chips import load_chip

    if getattr(args, "system", None):
        from hardware.systems import load_system

        system = load_system(args.system)
        return system.chips[0], system
    return load_chip(args.chip), None


def add_routing_args(p: _argparse.ArgumentParser) -> None:
    """MoE routing knobs (``mapper.routing``), shared by run, serve and train."""
    p.add_argument("--expert-skew", type=float, default=None, metavar="S",
                   help="Zipf exponent of expert popularity (0: uniform; default: the "
                        "model's); the busiest expert-parallel chip is simulated")
    p.add_argument("--capacity-factor", type=float, default=None, metavar="C",
                   help="each expert keeps at most C x its even share of token slots; the "
                        "rest are dropped (0: no cap; default: the model's)")


def routed(model, args):  # noqa: ANN001, ANN201
    """``model`` with the routing flags given on the command line; a bad value is a
    one-line error naming the flag."""
    from dataclasses import replace

    from mapper.model import ModelError

    changes = {}
    for flag, field in (("expert_skew", "expert_skew"), ("capacity_factor", "capacity_factor")):
        value = getattr(args, flag, None)
        if value is None:
            continue
        if not value >= 0 or value == float("inf"):
            raise ModelError(f"--{flag.replace('_', '-')}: must be a finite number >= 0, "
                             f"got {value}")
        changes[field] = value
    if changes and not model.experts:
        raise ModelError(f"--expert-skew / --capacity-factor: {model.name} has no experts")
    return replace(model, **changes) if changes else model
