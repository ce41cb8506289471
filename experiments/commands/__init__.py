

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
