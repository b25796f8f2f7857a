"""The PostgreSQL import's validating thread: it pauses while the COPY streams a chunk, but never
while the COPY waits for its rows."""

import threading
import time

from domain.services.members import _in_background


def test_a_paused_thread_still_makes_the_lists_that_are_waited_for():
    lists = _in_background(iter(range(7)), 3, threading.Event(), ahead=1)

    assert list(lists) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_paused_thread_makes_no_more_than_the_list_in_hand():
    made: list[int] = []
    paused = threading.Event()

    def items():
        for item in range(100):
            if item == 5:
                paused.wait()  # the second list is in hand when the thread is paused
            made.append(item)
            yield item

    working = threading.Event()
    lists = _in_background(items(), 5, working)
    assert next(lists) == [0, 1, 2, 3, 4]  # made at once: this thread waits for it
    working.clear()
    paused.set()
    deadline = time.monotonic() + 10
    while len(made) < 10 and time.monotonic() < deadline:  # the list in hand, however slow
        time.sleep(0.01)
    time.sleep(0.3)  # room to go on, were it not paused

    assert made == list(range(10))
    working.set()
    assert [item for rest in lists for item in rest] == list(range(5, 100))
