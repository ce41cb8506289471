

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
