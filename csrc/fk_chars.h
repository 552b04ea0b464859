/* RFC 9110 §5.6.2 tchar, the characters of a token (a method, a field name, a
 * transfer coding, a chunk extension's name): the one table of them, used by
 * the request parser, the chunked decoder, the response-field check and, through
 * forker/_csrc.pxd, the WSGI layer. */
#ifndef FK_CHARS_H
#define FK_CHARS_H

#include <stddef.h>

static const unsigned char fk_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

#define FK_IS_TCHAR(c) (fk_tchar[(unsigned char)(c)])

/* A field value's bytes (RFC 9110 §5.5): field-vchar, obs-text, SP and HTAB,
 * nothing else below 0x20 nor DEL, so no CR, LF or NUL can split a head. 0 when
 * valid, -1 otherwise. The response-field check (fk_write.c) and the WSGI
 * layer's start_response check (forker/_wsgi.pyx) both use it. */
static inline int fk_field_value_check(const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return -1;
    }
    return 0;
}

#endif
