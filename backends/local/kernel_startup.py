# $PYTHONSTARTUP of a local notebook server's kernels (and of `python` in its terminals). It runs in
# the user's namespace, so it leaves no name behind, and a missing package costs nothing.
try:
    from backends.local.memory_message import install as _install_memory_message

    _install_memory_message()
    del _install_memory_message
except ImportError:
    pass
