"""MkDocs hook: the command-line reference page (cli.md), generated from the parser itself.

Every command of `diffusion` with its description, usage line and a table of its options
(names, meaning, default), as `diffusion COMMAND --help` prints them, so the page cannot
drift from the code. The page is added to the site's files at build time; it has no source
file under docs/.
"""

from __future__ import annotations

import argparse
import contextlib

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "cli.md"
INTRO = """# Command line reference

Generated from the `diffusion` command's own parser when this site was built (so it says
what `diffusion COMMAND --help` says). Bad input to any command prints one line that names
the problem and exits with code 2; a run stopped by SIGTERM or Ctrl-C exits with 128 + the
signal's number after writing a checkpoint. Guides: [training and resuming](checkpoints.md),
[several processes](distributed.md), [images](images.md), [guidance](guidance.md).
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    with contextlib.suppress(KeyError, TypeError, ValueError):  # argparse's %(default)s
        text = text % {**vars(action), "prog": "diffusion"}
    if action.choices and "{" not in text and not isinstance(action.choices, dict):
        text += f" Choices: {', '.join(f'`{c}`' for c in action.choices)}."
    return _cell(text)


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(f"`{s}`" for s in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} `{metavar}`"


def command_section(name: str, parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().split())
    usage = usage.removeprefix("usage: ")
    lines = [f"## diffusion {name}", "", _cell(parser.description or ""), "", "```text",
             usage, "```", "", "| option | meaning |", "| --- | --- |"]  # fmt: skip
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        lines.append(f"| {_name(action)} | {_help(action)} |")
    return "\n".join(lines) + "\n"


def reference() -> str:
    """The page's Markdown."""
    from diffusion.cli.parser import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = ["| command | what it does |", "| --- | --- |"]
    summary += [f"| [`diffusion {c.dest}`](#diffusion-{c.dest}) | {_cell(c.help or '')} |"
                for c in commands._choices_actions]  # fmt: skip
    sections = [command_section(name, sub) for name, sub in commands.choices.items()]
    return "\n".join([INTRO, *summary, "", *sections])


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=reference()))
    return files
