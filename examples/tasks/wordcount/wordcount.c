// wordcount: counts the words of its input and returns them as a JSON object, most frequent
// first: {"the":3,"fox":1}. A word is a run of letters, digits, apostrophes or non-ASCII
// bytes, compared case-insensitively (ASCII).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

typedef struct {
    const char *text;
    size_t len;
    size_t count;
} word_t;

static int is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80;
}

static int by_text(const void *a, const void *b) {
    const word_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static int by_count_then_text(const void *a, const void *b) {
    const word_t *x = a, *y = b;
    if (x->count != y->count) {
        return x->count < y->count ? 1 : -1;
    }
    return by_text(a, b);
}

bool exports_task_run(task_list_u8_t *input, task_list_u8_t *ret, task_string_t *err) {
    (void)err;
    char *text = (char *)input->ptr;
    for (size_t i = 0; i < input->len; i++) {
        if (text[i] >= 'A' && text[i] <= 'Z') {
            text[i] = (char)(text[i] - 'A' + 'a');
        }
    }
    word_t *words = malloc(sizeof(word_t) * (input->len / 2 + 1));
    size_t n = 0;
    for (size_t i = 0; i < input->len;) {
        while (i < input->len && !is_word_byte((unsigned char)text[i])) i++;
        size_t start = i;
        while (i < input->len && is_word_byte((unsigned char)text[i])) i++;
        if (i > start) {
            words[n++] = (word_t){text + start, i - start, 1};
        }
    }
    qsort(words, n, sizeof(word_t), by_text);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (unique > 0 && by_text(&words[unique - 1], &words[i]) == 0) {
            words[unique - 1].count++;
        } else {
            words[unique++] = words[i];
        }
    }
    qsort(words, unique, sizeof(word_t), by_count_then_text);
    size_t cap = 2;
    for (size_t i = 0; i < unique; i++) cap += words[i].len + 24;
    char *out = malloc(cap);
    size_t len = 0;
    out[len++] = '{';
    for (size_t i = 0; i < unique; i++) {
        len += (size_t)snprintf(out + len, cap - len, "%s\"%.*s\":%zu", i ? "," : "", (int)words[i].len,
                                words[i].text, words[i].count);
    }
    out[len++] = '}';
    ret->ptr = (uint8_t *)out;
    ret->len = len;
    return true;
}
