"""Analyse every spectrum file in a folder with the shipped model and print a table.

python examples/analyse_folder.py ../shared/realxps
"""

import sys

import xpstream
from xpstream.present import signed_ev

predictions = xpstream.analyse(sys.argv[1] if len(sys.argv) > 1 else ".")
for p in predictions:
    groups = ", ".join(f"{name} {p.group_percent.get(name, float('nan')):.0f} %" for name in p.labels)
    verdict = "in library" if p.in_library else "NOT IN LIBRARY"
    print(f"{p.source}: {verdict}, shift {signed_ev(p.shift_ev)}, {groups or 'no group'}")
