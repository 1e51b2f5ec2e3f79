#!/bin/sh
# As the official image does: rabbitmq-server runs in the foreground as the rabbitmq
# user, with RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS as its default account.
set -e
if [ "$1" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
    {
        if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
            echo "default_user = $RABBITMQ_DEFAULT_USER"
        fi
        if [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then
            echo "default_pass = $RABBITMQ_DEFAULT_PASS"
        fi
    } > /etc/rabbitmq/rabbitmq.conf
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
fi
if [ "$1" = rabbitmq-server ]; then
    # Debian's /usr/sbin/rabbitmq-server sends the server's output to a file; the
    # script behind it runs the node in the foreground with its log on stdout.
    shift
    set -- /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
