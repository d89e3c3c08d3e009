"""Errors raised for bad user input.

Every problem a user can cause (a missing file, a wrong shape, an unknown scheme)
raises :class:`SynthcalibError` with a one-line message that names the culprit and
what was expected. The CLI turns it into ``synthcalib: error: ...`` and exit code 2.

An error about an option carries the option's key (``classes``, ``transform.mean``: the key
``mean`` of the ``transform`` option); each front-end shows it under its own name of that option
(``--mean``, ``preprocessing.mean``, ``transform['mean']``, ``engine.preprocessing.mean``) by
:meth:`SynthcalibError.named`, and a message may name other options the same way (it is then a
function of the front-end's names). Nothing reads a message's text back.
"""

from __future__ import annotations

from collections.abc import Callable

#: How a front-end names an option: its key -> the name the user knows it by.
Namer = Callable[[str], str]
#: A message: text, or text that names options, made from a front-end's :data:`Namer`.
Message = str | Callable[[Namer], str]


def python_name(key: str) -> str:
    """A key as the Python API writes it: ``transform.mean`` -> ``transform['mean']``; any other key
    (``classes``, a name such as ``--size``) as it is."""
    head, dot, sub = key.partition(".")
    return f"{head}[{sub!r}]" if dot and head.isidentifier() and sub.isidentifier() else key


class SynthcalibError(ValueError):
    """A user-facing error: one line naming the file, flag or key at fault.

    ``key`` is the option at fault, where there is one: the message is then its name followed by
    :meth:`detail`. As raised it names the key as the Python API does (:func:`python_name`); a
    front-end renames it with :meth:`named`.
    """

    exit_code = 2

    def __init__(self, message: Message, key: str | None = None) -> None:
        self.key = key
        self._message = message
        super().__init__(self.render())

    def detail(self, name: Namer = python_name) -> str:
        """The message without the option's name (all of it when there is no key)."""
        text = self._message(name) if callable(self._message) else self._message
        return " ".join(str(text).split())

    def render(self, name: Namer = python_name) -> str:
        """The one line, with every option named by ``name``."""
        return f"{name(self.key)}: {self.detail(name)}" if self.key else self.detail(name)

    def named(self, name: Namer) -> SynthcalibError:
        """This error in a front-end's words (``name``: an option's key -> its name there); returned
        to be raised again."""
        self.args = (self.render(name),)
        return self

    def about(self, option: str) -> SynthcalibError:
        """This error as one about ``option``, unless it has a key of its own already."""
        if self.key is None:
            self.key = option
        return self.named(python_name)

    def under(self, option: str) -> SynthcalibError:
        """This error as one about ``option``: its own key becomes a key of that option (a
        transform's ``mean`` is ``transform.mean``); without a key, the option is at fault."""
        self.key = f"{option}.{self.key}" if self.key else option
        return self.named(python_name)
