#include "fk_conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>

void fk_conn_peer(const fk_conn *c, char *host, size_t size, int *port)
{
    host[0] = '\0';
    *port = 0;
    if (c->peer.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->peer;
        inet_ntop(AF_INET, &sin->sin_addr, host, (socklen_t)size);
        *port = ntohs(sin->sin_port);
    } else if (c->peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&c->peer;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host, (socklen_t)size);
        else
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, (socklen_t)size);
        *port = ntohs(sin6->sin6_port);
    }
}
