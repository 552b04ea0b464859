# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# TLS: the OpenSSL that Python's ssl module loaded, found at run time by
# the C core (csrc/fk_tls.c), and the server context made from the
# configuration's files or taken from an ssl.SSLContext.

def tls_library():
    """The version of the OpenSSL that Python's ssl module loaded, which the
    loop's TLS uses; raises OSError when there is none usable."""
    cdef char err[512]
    cdef bytes path = None
    import ssl  # loads OpenSSL: forker only looks it up
    import _ssl
    if getattr(_ssl, "__file__", None):
        path = os.fsencode(_ssl.__file__)
    if fk_tls_load(NULL if path is None else PyBytes_AS_STRING(path), err, sizeof(err)) != 0:
        raise OSError(err.decode("utf-8", "replace"))
    return fk_tls_version().decode("ascii", "replace")


cdef extern from *:
    """
    /* The start of CPython's PySSLContext (Modules/_ssl.c, the same from 3.x
     * to 3.14): the OpenSSL context follows the object header. */
    typedef struct { PyObject_HEAD void *ctx; } fk_py_ssl_context;
    """
    ctypedef struct fk_py_ssl_context:
        void *ctx


cdef void *openssl_context(context) except NULL:
    """The SSL_CTX inside an ssl.SSLContext, checked against what the object
    reports of it; raises ConfigError when it cannot be found."""
    from .errors import ConfigError
    cdef void *ssl_ctx = (<fk_py_ssl_context *><PyObject *>context).ctx
    verify = {0: 0, 1: 1, 2: 3}[int(context.verify_mode)]  # CERT_* -> SSL_VERIFY_* bits
    if not fk_tls_ctx_matches(ssl_ctx, verify, int(context.options)):
        raise ConfigError("ssl_context: the OpenSSL context was not found inside the "
                          "ssl.SSLContext object; use certfile and keyfile instead")
    return ssl_ctx


def check_ssl_context(context):
    """Raises ConfigError unless the loop can serve TLS with context."""
    tls_library()
    openssl_context(context)


cdef fk_tls_ctx *tls_context(config, bytes keys, context, list keep) except NULL:
    """A server context: the OpenSSL one of context (an ssl.SSLContext the
    worker checked, forker.tls.context_from), or without one a context made from
    the files of config.certfile, keyfile and ca_certs with cert_reqs and
    ciphers; keys are the session ticket keys the workers share. Raises
    ConfigError naming the file or setting at fault. keep receives what must
    stay alive as long as the context."""
    from .errors import ConfigError
    cdef fk_tls_options o
    cdef fk_tls_ctx *ctx
    cdef char err[1024]
    cdef bytes certfile, keyfile, ca_certs, ciphers
    if keys is None or len(keys) != FK_TLS_TICKET_KEYS:
        raise ValueError("session ticket keys of the wrong length")
    try:
        tls_library()
    except OSError as exc:
        raise ConfigError(f"certfile: TLS is not available: {exc}") from None
    if context is not None:
        keep.append(context)
        ctx = fk_tls_ctx_adopt(openssl_context(context),
                               <const unsigned char *>PyBytes_AS_STRING(keys), err, sizeof(err))
        if ctx == NULL:
            raise ConfigError(f"ssl_context: {err.decode('utf-8', 'replace')}")
        return ctx
    if not config.certfile:
        raise ConfigError("certfile: an https listener needs a certificate")
    certfile = os.fsencode(config.certfile)
    keyfile = os.fsencode(config.keyfile) if config.keyfile else None
    ca_certs = os.fsencode(config.ca_certs) if config.ca_certs else None
    ciphers = config.ciphers.encode("ascii") if config.ciphers else None
    o.certfile = PyBytes_AS_STRING(certfile)
    o.keyfile = NULL if keyfile is None else PyBytes_AS_STRING(keyfile)
    o.ca_certs = NULL if ca_certs is None else PyBytes_AS_STRING(ca_certs)
    o.ciphers = NULL if ciphers is None else PyBytes_AS_STRING(ciphers)
    o.verify = {"none": FK_TLS_VERIFY_NONE, "optional": FK_TLS_VERIFY_OPTIONAL,
                "required": FK_TLS_VERIFY_REQUIRED}[config.cert_reqs]
    o.ticket_keys = <const unsigned char *>PyBytes_AS_STRING(keys)
    ctx = fk_tls_ctx_create(&o, err, sizeof(err))
    if ctx == NULL:
        raise ConfigError(err.decode("utf-8", "replace"))
    return ctx
