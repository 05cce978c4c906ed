"""The Chaos section says how the web ran, and when that is not the shipped default, says so."""

from __future__ import annotations

from chaos.run import web_phrase
from chaos.stack import StackConfig
from web.serve import PROCESSES_DEFAULT, THREADS_DEFAULT


def test_a_web_shape_other_than_the_default_is_named_as_such():
    phrase = web_phrase(StackConfig(web_processes=2, web_threads=THREADS_DEFAULT * 2))
    assert phrase.startswith(f"granian (2x{THREADS_DEFAULT * 2} threads")
    assert f"the default is {PROCESSES_DEFAULT}x{THREADS_DEFAULT}" in phrase


def test_the_default_shape_is_named_plainly():
    config = StackConfig(web_processes=PROCESSES_DEFAULT, web_threads=THREADS_DEFAULT)
    assert web_phrase(config) == f"granian ({PROCESSES_DEFAULT}x{THREADS_DEFAULT} threads)"
