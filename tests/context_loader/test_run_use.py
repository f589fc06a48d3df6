"""Which functions read their run: a variable that does not is computed from its inputs
without the run being opened."""
import functools

from context_loader.run_use import reads_run


def plain(run, x: "var#x"):
    return x * 2


def uses(run, x: "var#x"):
    return run.train_ids[0] + x


def in_comprehension(run, xs: "var#x"):
    return [run for _ in xs]


def in_closure(run):
    return lambda: run


def deleted(run):
    del run
    return 1


def through_locals(run, x: "var#x"):
    return locals()["x"]


def through_frame(run):
    import sys
    return sys._getframe().f_locals


def wrapped(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


def test_a_function_that_never_loads_its_run_does_not_read_it():
    assert not reads_run(plain)
    assert not reads_run(lambda run, x: x + 1)


def test_every_way_of_reaching_the_run_counts_as_reading_it():
    for func in (uses, in_comprehension, in_closure, deleted, through_locals, through_frame,
                 wrapped(plain), print, lambda *args: 0, functools.partial(plain, None)):
        assert reads_run(func), func
