"""Test doubles shipped with xcon: a fake qemu NIC and helpers to run xcon."""
