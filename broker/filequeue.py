"""The embedded default's file queue: kombu's filesystem transport, with each message written
whole before any consumer can see it.

kombu creates a message's file and then writes it; a consumer listing the folder in between
moves the empty file away, fails to decode it and its worker stops (celery/kombu#1551, open).
Here the message is written under a name consumers skip, then renamed into place, atomically.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # The name kombu gives (time first, so consumers take messages in order).
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # not `<queue>.msg`: no consumer takes it
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as error:
            raise ChannelError(f"Cannot add file {final!r} to directory") from error


class Transport(filesystem.Transport):
    Channel = Channel
