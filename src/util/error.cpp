#include "util/error.h"

namespace flashmoe {

int exit_code_for(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::BadInput: return 2;
        case ErrorKind::BadModel: return 3;
        case ErrorKind::Io: return 4;
        case ErrorKind::OutOfMemory: return 5;
        case ErrorKind::Internal: return 70;
    }
    return 70;
}

const char* error_kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::BadInput: return "bad input";
        case ErrorKind::BadModel: return "bad model";
        case ErrorKind::Io: return "I/O error";
        case ErrorKind::OutOfMemory: return "out of memory";
        case ErrorKind::Internal: return "internal error";
    }
    return "internal error";
}

}  // namespace flashmoe
