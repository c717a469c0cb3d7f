// `flashmoe tokenize` end to end: runs the real binary on the Qwen3 tokenizer directory.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

namespace {

struct CliResult {
    int exit_code;
    std::string out;
};

CliResult run_cli(const std::string& args) {
    const std::string cmd = std::string(FLASHMOE_BINARY) + " " + args + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return {-1, ""};
    std::string out;
    std::array<char, 4096> buf;
    while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const std::string kModel = std::string(FLASHMOE_TEST_DATA) + "/tokenizer/qwen3";

}  // namespace

TEST(CmdTokenize, PrintsIdsOnly) {
    const CliResult r = run_cli("tokenize " + kModel + " 'Hello world<|im_end|>' --ids-only");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "9707,1879,151645\n");
}

TEST(CmdTokenize, PrintsIdsAndEscapedPieces) {
    const CliResult r = run_cli("tokenize " + kModel + " \"$(printf 'Hi\\n\\tx')\"");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "13048\tHi\n198\t\\n\n10225\t\\tx\n");
}

TEST(CmdTokenize, MissingModelIsABadModelError) {
    const CliResult r = run_cli("tokenize /nonexistent/model hello");
    EXPECT_EQ(r.exit_code, 3) << r.out;
    EXPECT_NE(r.out.find("tokenizer"), std::string::npos) << r.out;
}

TEST(CmdTokenize, InvalidUtf8IsABadInputError) {
    const CliResult r = run_cli("tokenize " + kModel + " \"$(printf 'ab\\377')\"");
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("byte offset 2"), std::string::npos) << r.out;
}
