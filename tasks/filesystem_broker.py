"""The embedded broker: kombu's filesystem transport, with messages written so a reader never sees half of one.

kombu's own transport creates the message file under its final name and then writes into it. A worker that
lists the folder in between takes the empty file, fails to decode it, and the worker process dies (seen in the
browser journeys under load). Here each message is written under a name the reader ignores and then renamed
into place, which is atomic within one folder.
"""
from __future__ import annotations

import os
import uuid

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "backoffice-filesystem"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: written aside, then renamed to the name the reader looks for."""
        name = "{}_{}.{}.msg".format(int(round(filesystem.monotonic() * 1000)), uuid.uuid4(), queue)
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc
        finally:
            if os.path.exists(partial):
                os.unlink(partial)


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
