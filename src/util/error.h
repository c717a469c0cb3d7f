// The one error taxonomy of flashmoe. Every failure that a user can cause or see is thrown as
// flashmoe::Error with a kind; the CLI maps kinds to exit codes and the server to HTTP statuses,
// each in one place. Messages name the file, tensor, field or flag at fault and what was expected.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace flashmoe {

enum class ErrorKind {
    BadInput,     // a flag, request or prompt the user gave is invalid
    BadModel,     // a model file, config or tokenizer is missing, truncated or inconsistent
    Io,           // the OS refused a read, write, open or map
    OutOfMemory,  // a budget or an allocation could not be met
    Internal,     // a broken invariant: a bug in flashmoe
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
    ErrorKind kind() const { return kind_; }

private:
    ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

// Process exit code for an error kind (the CLI's one mapping).
int exit_code_for(ErrorKind kind);
const char* error_kind_name(ErrorKind kind);

}  // namespace flashmoe
