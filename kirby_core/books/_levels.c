/* The per-level work of a depth message, compiled: kirby_core.books.book's fast path.

   A depth message carries 3-40 levels, and in Python the loop over them (a size checked
   against its grammar, a price looked up, an order verified, a level stored) cost more
   than the rest of the message together: Binance's 20-level diffs and Hyperliquid's
   40-level pushes missed issue 15's 50k messages/s. These loops do the same steps
   through the same objects (the price cache, the side's dict and heap, Python's own
   `heapq.heappush` and Decimal comparisons), minus the interpreter; the rules, the
   choices and every error message stay in book.py, which documents each function (see
   `_levels.pyi`). Measured in bench/README.md "Issue 15: order books".

   Nothing here raises for bad market data: a size outside the grammar, a short row or a
   side out of order returns None, and book.py's checked path names the culprit. An
   exception from the price cache (a price that is no decimal > 0 below 10^30) propagates
   to book.py, which catches it the same way. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *heappush; /* heapq.heappush: the side's heap stays Python's heap */

static int
arity(const char *name, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs == expected) {
        return 1;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected, nargs);
    return 0;
}

/* A text of SIZE_GRAMMAR (book.py): (?:0|[1-9][0-9]{0,29})(?:\.[0-9]{1,30})?, an ASCII str;
   `whole` is the count of its integer digits (the point's index, or its length). */
typedef struct {
    const Py_UCS1 *s;
    Py_ssize_t n, whole;
} Plain;

static int
plain(PyObject *text, Plain *p)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        return 0;
    }
    const Py_UCS1 *s = p->s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = p->n = PyUnicode_GET_LENGTH(text), i = 0, start;
    if (n == 0) {
        return 0;
    }
    if (s[0] == '0') {
        i = 1;
    }
    else {
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == 0 || i > 30) {
            return 0;
        }
    }
    p->whole = i;
    if (i == n) {
        return 1;
    }
    if (s[i] != '.') {
        return 0;
    }
    start = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    return i == n && i - start >= 1 && i - start <= 30;
}

/* -1, 0 or 1 as the number `a` is below, equal to or above `b` (plain texts: no leading
   zero, so more integer digits is more; then digit by digit, a missing decimal a 0). */
static int
compare(const Plain *a, const Plain *b)
{
    if (a->whole != b->whole) {
        return a->whole < b->whole ? -1 : 1;
    }
    int integers = memcmp(a->s, b->s, a->whole);
    if (integers != 0) {
        return integers < 0 ? -1 : 1;
    }
    for (Py_ssize_t i = a->whole + 1; i < a->n || i < b->n; i++) {
        Py_UCS1 x = i < a->n ? a->s[i] : '0', y = i < b->n ? b->s[i] : '0';
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return 0;
}

/* The price of `text` through the cache: a dict hit, else the cache's __missing__ (which
   converts and checks it, or raises). New reference, or NULL with the exception set. */
static inline PyObject *
price_of(PyObject *cache, PyObject *text)
{
    PyObject *price = PyDict_GetItemWithError(cache, text);
    if (price != NULL) {
        Py_INCREF(price);
        return price;
    }
    return PyErr_Occurred() ? NULL : PyObject_GetItem(cache, text);
}

/* plain_sizes(*sizes: list[str]) -> bool: every text of every list plain. */
static PyObject *
plain_sizes(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Plain p;
    for (Py_ssize_t k = 0; k < nargs; k++) {
        if (!PyList_Check(args[k])) {
            Py_RETURN_FALSE;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args[k]); i++) {
            if (!plain(PyList_GET_ITEM(args[k], i), &p)) {
                Py_RETURN_FALSE;
            }
        }
    }
    Py_RETURN_TRUE;
}

/* prices(texts: list[str], cache) -> list[Decimal] */
static PyObject *
prices(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!arity("prices", nargs, 2)) {
        return NULL;
    }
    PyObject *texts = PySequence_Fast(args[0], "prices: the texts must be a sequence");
    if (texts == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(texts);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *text = Py_NewRef(PySequence_Fast_GET_ITEM(texts, i)); /* the cache runs Python */
        PyObject *price = price_of(args[1], text);
        Py_DECREF(text);
        if (price == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, price);
    }
    Py_DECREF(texts);
    return out;
}

/* rows(rows: list[list[str] | tuple[str, ...]], cache) -> (list[Decimal], list[str]) | None:
   the prices (column 0) and the plain size texts (column 1) of `[price, size, ...]` rows;
   None for a short row or a size that is not plain. */
static PyObject *
rows(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!arity("rows", nargs, 2)) {
        return NULL;
    }
    if (!PyList_Check(args[0])) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    PyObject *out_prices = PyList_New(n), *out_sizes = PyList_New(n);
    if (out_prices == NULL || out_sizes == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(args[0], i), *text, *size;
        Plain p;
        if (PyTuple_Check(row) && PyTuple_GET_SIZE(row) >= 2) {
            text = PyTuple_GET_ITEM(row, 0);
            size = PyTuple_GET_ITEM(row, 1);
        }
        else if (PyList_Check(row) && PyList_GET_SIZE(row) >= 2) {
            text = PyList_GET_ITEM(row, 0);
            size = PyList_GET_ITEM(row, 1);
        }
        else {
            goto refuse;
        }
        if (!plain(size, &p)) {
            goto refuse;
        }
        /* held before the cache, which may run Python code */
        PyList_SET_ITEM(out_sizes, i, Py_NewRef(size));
        Py_INCREF(text);
        PyObject *price = price_of(args[1], text);
        Py_DECREF(text);
        if (price == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out_prices, i, price);
    }
    return Py_BuildValue("(NN)", out_prices, out_sizes); /* N: the tuple takes both */
refuse:
    Py_DECREF(out_prices);
    Py_DECREF(out_sizes);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out_prices);
    Py_XDECREF(out_sizes);
    return NULL;
}

/* ordered(rows: list, price: str, size: str, cache, descending: bool)
       -> (list[Decimal], list[str]) | None
   The prices and the plain size texts of rows whose attributes `price` and `size` are
   texts (Hyperliquid's {"px", "sz"} Structs); None for a missing attribute, a size that
   is not plain, or prices not strictly descending (bids) or ascending (asks). Two plain
   price texts are compared as texts (`compare`), any other pair as their Decimals. */
static PyObject *
ordered(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!arity("ordered", nargs, 5)) {
        return NULL;
    }
    if (!PyList_Check(args[0])) {
        Py_RETURN_NONE;
    }
    int descending = PyObject_IsTrue(args[4]);
    if (descending < 0) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    PyObject *out_prices = PyList_New(n), *out_sizes = PyList_New(n), *text = NULL, *last = NULL;
    Plain at, before = {NULL, 0, 0};
    int plain_at, plain_before = 0;
    if (out_prices == NULL || out_sizes == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = Py_NewRef(PyList_GET_ITEM(args[0], i));
        PyObject *size = PyObject_GetAttr(row, args[2]);
        if (size == NULL) {
            Py_DECREF(row);
            goto missing;
        }
        PyList_SET_ITEM(out_sizes, i, size);
        if (!plain(size, &at)) {
            Py_DECREF(row);
            goto refuse;
        }
        Py_XSETREF(text, PyObject_GetAttr(row, args[1]));
        Py_DECREF(row);
        if (text == NULL) {
            goto missing;
        }
        PyObject *price = price_of(args[3], text);
        if (price == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out_prices, i, price);
        plain_at = plain(text, &at);
        if (i > 0) {
            int order;
            if (plain_at && plain_before) {
                order = compare(&before, &at) == (descending ? 1 : -1);
            }
            else {
                order = PyObject_RichCompareBool(
                    PyList_GET_ITEM(out_prices, i - 1), price, descending ? Py_GT : Py_LT);
                if (order < 0) {
                    goto fail;
                }
            }
            if (!order) {
                goto refuse;
            }
        }
        Py_XSETREF(last, Py_NewRef(text)); /* `before` reads its characters */
        before = at;
        plain_before = plain_at;
    }
    Py_XDECREF(text);
    Py_XDECREF(last);
    return Py_BuildValue("(NN)", out_prices, out_sizes);
missing:
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        goto fail;
    }
    PyErr_Clear();
refuse:
    Py_XDECREF(text);
    Py_XDECREF(last);
    Py_DECREF(out_prices);
    Py_DECREF(out_sizes);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(text);
    Py_XDECREF(last);
    Py_XDECREF(out_prices);
    Py_XDECREF(out_sizes);
    return NULL;
}

/* One level of `apply`: 0, or -1 with the exception set. */
static int
store(PyObject *levels, PyObject *heap, PyObject *price, PyObject *text, PyObject *zero,
      PyObject *negated)
{
    int is_zero = PySet_Contains(zero, text);
    int held = is_zero < 0 ? -1 : PyDict_Contains(levels, price);
    if (held < 0) {
        return -1;
    }
    if (is_zero) {
        return held ? PyDict_DelItem(levels, price) : 0;
    }
    if (!held) {
        PyObject *key = negated == Py_None ? Py_NewRef(price) : price_of(negated, price);
        if (key == NULL) {
            return -1;
        }
        PyObject *call[2] = {heap, key};
        PyObject *pushed = PyObject_Vectorcall(heappush, call, 2, NULL);
        Py_DECREF(key);
        if (pushed == NULL) {
            return -1;
        }
        Py_DECREF(pushed);
    }
    return PyDict_SetItem(levels, price, text);
}

/* apply(levels: dict, heap: list, prices: list[Decimal], sizes: list[str], zero: frozenset,
   negated: dict | None) -> None: each level's size set (a text of `zero` deletes it); a
   price new to `levels` pushed on `heap` (as negated[price] when negated is a dict). */
static PyObject *
apply(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (!arity("apply", nargs, 6)) {
        return NULL;
    }
    PyObject *levels = args[0], *heap = args[1], *zero = args[4], *negated = args[5];
    if (!PyDict_Check(levels) || !PyList_Check(args[2]) || !PyList_Check(args[3])
        || PyList_GET_SIZE(args[2]) != PyList_GET_SIZE(args[3])) {
        PyErr_SetString(PyExc_TypeError, "apply: a dict, a heap and two lists of one length");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(args[2]);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_SIZE(args[2]) <= i || PyList_GET_SIZE(args[3]) <= i) {
            break; /* only if the cache's Python code shortened a list */
        }
        /* held: the negated cache runs Python code */
        PyObject *price = Py_NewRef(PyList_GET_ITEM(args[2], i));
        PyObject *text = Py_NewRef(PyList_GET_ITEM(args[3], i));
        int done = store(levels, heap, price, text, zero, negated);
        Py_DECREF(price);
        Py_DECREF(text);
        if (done < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"plain_sizes", (PyCFunction)(void (*)(void))plain_sizes, METH_FASTCALL, NULL},
    {"prices", (PyCFunction)(void (*)(void))prices, METH_FASTCALL, NULL},
    {"ordered", (PyCFunction)(void (*)(void))ordered, METH_FASTCALL, NULL},
    {"rows", (PyCFunction)(void (*)(void))rows, METH_FASTCALL, NULL},
    {"apply", (PyCFunction)(void (*)(void))apply, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_levels",
    .m_doc = "The per-level work of a depth message (kirby_core.books.book's fast path).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__levels(void)
{
    PyObject *heapq = PyImport_ImportModule("heapq");
    if (heapq == NULL) {
        return NULL;
    }
    heappush = PyObject_GetAttrString(heapq, "heappush");
    Py_DECREF(heapq);
    if (heappush == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
