"""Shrink PNG pictures for the README: reduce them to a palette of --colors colours (median cut, no
dithering), in place. The pictures nbconv writes are full-colour; noise-like ones (maximum-response
images) compress badly without this.

Usage: python scripts/shrink_png.py [--colors 64] FILE.png...
"""
import argparse

from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--colors", type=int, default=64)
    parser.add_argument("files", nargs="+")
    arguments = parser.parse_args()
    for path in arguments.files:
        with Image.open(path) as image:
            picture = image.convert("RGB")
        picture.quantize(arguments.colors, method=Image.Quantize.MEDIANCUT,
                         dither=Image.Dither.NONE).save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main()
