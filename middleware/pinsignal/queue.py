"""Enqueueing Pinterest events for the delivery worker. OWNER: delivery work (issue 4). STUB.

Contract used by the collector and ``track()``:

    queue = await EventQueue.connect(config)        # one per process, opened on lifespan or lazily
    result = await queue.enqueue([event, ...])      # v5 event dicts, already hashed and validated
    result.queued, result.duplicates                # event ids
    await queue.close()
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EnqueueResult:
    queued: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
