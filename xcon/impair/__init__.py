"""Link impairment: what to do to the frames of one direction (netem's words).

:mod:`xcon.impair.spec` parses ``tc-netem(8)`` vocabulary and units (and
containerlab's flags) into an :class:`Impairment`; :mod:`xcon.impair.stage`
applies one to frame spans on a clock it is given (sans-I/O);
:class:`xcon.bridges.impair.ImpairFlow` runs a stage inside a link.
"""

from xcon.impair.spec import ImpairError, Impairment, parse_netem

__all__ = ["ImpairError", "Impairment", "parse_netem"]
