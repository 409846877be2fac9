"""The command line every exporter shares (torch-free: export.tensorrt runs without PyTorch).

`python -m export.<format> SOURCE -o OUTPUT [recipe flags] [dataset and verification flags]`: the
recipe's flags come from its dataclass (sunet_deploy.formats, sunet_deploy.options) and parse into
`args.recipe`; exporters that verify on images also get `args.images` (export.calibration).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from sunet_deploy.cli import EXIT_STATUS_HELP
from sunet_deploy.flags import add_flag
from sunet_deploy.options import add_option_flags, from_args


def parse_export_args(argv: list[str] | None, prog: str, description: str, source: tuple[str, str], output_help: str,
                      recipe: type, images: bool = False,
                      more_flags: Callable[[argparse.ArgumentParser], None] | None = None,
                      recipe_extra: Callable[[argparse.Namespace], dict] | None = None) -> argparse.Namespace:  # fmt: skip
    """The parsed command line of an exporter: positional `source` (name, help), `-o/--output`, the
    recipe's flags (`more_flags` adds others; `recipe_extra` gives recipe fields from them), and with
    `images` the dataset flags, --verify-images and --seed. A refused recipe is a usage error."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(source[0], type=Path, help=source[1])
    add_flag(parser, "--output", short="-o", required=True, help=output_help)
    add_option_flags(parser, [recipe], absent_default=False)
    if more_flags is not None:
        more_flags(parser)
    if images:
        from export.calibration import add_image_flags

        add_image_flags(parser)
    args = parser.parse_args(argv)
    try:  # before args.images becomes the image source (Int8Recipe.images is the calibration count)
        args.recipe = from_args(recipe, args, **(recipe_extra(args) if recipe_extra else {}))
    except ValueError as exc:
        parser.error(str(exc))
    if images:
        from export.calibration import choice_from_args

        args.images = choice_from_args(parser, args)
    return args
