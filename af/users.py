"""`af user`: the embedded facility's logins, one own password per user (facility.credentials)."""

from __future__ import annotations

import sys

import click

from af.runtime import StateDir
from facility.credentials import CredentialStore, credentials_path, generate_password
from facility.model import Facility
from facility.runtime import Runtime
from facility.usernames import UsernameError, checked_username


def _store(state: StateDir) -> CredentialStore:
    return CredentialStore(credentials_path(state.root))


def _name(raw: str) -> str:
    try:
        return checked_username(raw)
    except UsernameError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _show_password(name: str, password: str) -> None:
    click.echo(f"Password of {name} (shown once; only its hash is kept):")
    click.echo(password)


@click.group("user")
def user() -> None:
    """Logins of the embedded facility (auth.type local): each user has their own password."""


@user.command("add")
@click.argument("name")
@click.pass_obj
def add(state: StateDir, name: str) -> None:
    """Create a login for NAME and print its generated password once."""
    name = _name(name)
    password = generate_password()
    if not _store(state).add(name, password):
        click.echo(f"error: {name} already has a login; `af user reset {name}` gives a new password", err=True)
        sys.exit(1)
    _show_password(name, password)


@user.command("reset")
@click.argument("name")
@click.pass_obj
def reset(state: StateDir, name: str) -> None:
    """Give NAME a new generated password (printed once); the old one stops working."""
    name = _name(name)
    store = _store(state)
    if not store.has(name):
        click.echo(f"error: {name} has no login; `af user add {name}` creates one", err=True)
        sys.exit(1)
    password = generate_password()
    store.set(name, password)
    _show_password(name, password)


@user.command("remove")
@click.argument("name")
@click.pass_obj
def remove(state: StateDir, name: str) -> None:
    """Delete NAME's login: the password stops working (running servers are not stopped)."""
    name = _name(name)
    if not _store(state).remove(name):
        click.echo(f"error: {name} has no login", err=True)
        sys.exit(1)
    click.echo(f"Removed the login of {name}")


@user.command("list")
@click.pass_obj
def list_users(state: StateDir) -> None:
    """The names that have a login, one per line."""
    for name in _store(state).names():
        click.echo(name)


def prepare_logins(fac: Facility, runtime: Runtime) -> list[str]:
    """For `af up`: give admins without a login the admin password; return how to log in."""
    if fac.auth.type != "local":
        return [f"Log in through {fac.auth.oidc.issuer}"]
    store = CredentialStore(credentials_path(runtime.state_path))
    admin_password = runtime.secrets.admin_password
    lines = []
    for raw_name in fac.auth.admin_users:
        try:
            name = checked_username(raw_name)
        except UsernameError as exc:
            lines.append(f"Admin {raw_name!r} gets no login: {exc}")
            continue
        store.add(name, admin_password)  # keeps a password set earlier by `af user reset`
        if store.verify(name, admin_password):
            lines.append(f"Log in as {name} with the password {admin_password}")
        else:
            lines.append(f"Log in as {name} with the password `af user reset {name}` printed")
    lines.append("Give each user a login with `af user add NAME` (it prints their password once).")
    if fac.auth.shared_password:
        lines.append(
            f"auth.shared_password is on: any name without a login may also use {runtime.secrets.user_password}"
        )
    return lines
