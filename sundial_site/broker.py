"""The serverless broker of the embedded default: kombu's file-system transport, made safe.

kombu's transport creates a file empty and writes it afterwards, while another process
may already read it: it then reads "" and dies with "Unrecoverable error:
JSONDecodeError" (the worker of ``make run`` did, within minutes, with beat writing a tick
every second). It does so for every message, and for an exchange's table on first use.
Here both are written under a name no reader looks at and moved into place atomically,
so a reader only ever sees complete files.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # kombu's own base and file-system channels disagree on this signature's names.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's naming
        final = os.path.join(self.data_folder_out, name)
        # Consumers only take names ending in ".<queue>.msg"; this one ends in ".partial".
        partial = os.path.join(self.data_folder_out, f"{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.rename(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _queue_bind(self, exchange: Any, routing_key: Any, pattern: Any, queue: Any) -> None:
        table = self._exchange_file(exchange)
        if not table.exists():
            # The first binding publishes the whole table at once; later ones are added by
            # kombu under its file lock.
            binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            self.control_folder.mkdir(parents=True, exist_ok=True)
            partial = table.with_name(f"{uuid.uuid4()}.partial")
            partial.write_bytes(str_to_bytes(dumps([binding])))
            try:
                os.link(partial, table)  # atomic, and refuses if another process won
                return
            except FileExistsError:
                pass
            finally:
                partial.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel


# "filesystem://" in this project means the transport above.
TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
