"""Link impairment: what to do to the frames of one direction (netem's words).

:mod:`xcon.impair.spec` parses ``tc-netem(8)`` vocabulary and units (and
containerlab's flags) into an :class:`Impairment`; :mod:`xcon.impair.stage`
applies one to frame spans on a clock it is given (sans-I/O);
:class:`xcon.impair.sender.ImpairSender` runs one as the stage of a
link's direction (:mod:`xcon.bridges.flows`).
"""

from xcon.impair.spec import ImpairError, Impairment, parse_netem

__all__ = ["ImpairError", "Impairment", "parse_netem"]
