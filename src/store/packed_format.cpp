#include "store/packed_format.h"

#include "util/error.h"

#include <fmt/format.h>

namespace flashmoe {

namespace {

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

WeightFormat format_from_name(const std::string& s, const std::string& source) {
    for (auto f : {WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16, WeightFormat::Affine}) {
        if (weight_format_name(f) == s) return f;
    }
    fail(ErrorKind::BadModel, "{}: unknown weight format '{}'", source, s);
}

DType dtype_from_name(const std::string& s, const std::string& source) {
    for (auto d : {DType::F32, DType::F16, DType::BF16}) {
        if (dtype_name(d) == s) return d;
    }
    fail(ErrorKind::BadModel, "{}: unknown scale dtype '{}'", source, s);
}

}  // namespace

size_t RecordMatrix::data_bytes() const {
    Matrix m;
    m.format = format;
    m.rows = rows;
    m.cols = cols;
    m.bits = bits;
    return m.data_bytes();
}

size_t RecordMatrix::scale_bytes() const {
    if (format != WeightFormat::Affine) return 0;
    return size_t(rows) * size_t(cols / group_size) * dtype_size(scale_dtype);
}

Matrix RecordMatrix::view(const uint8_t* record) const {
    Matrix m;
    m.format = format;
    m.rows = rows;
    m.cols = cols;
    m.bits = bits;
    m.group_size = group_size;
    m.scale_dtype = scale_dtype;
    m.data = record + data_offset;
    if (format == WeightFormat::Affine) {
        m.scales = record + scales_offset;
        m.biases = record + biases_offset;
    }
    return m;
}

ExpertRecordLayout ExpertRecordLayout::make(int64_t hidden, int64_t intermediate,
                                            const std::array<Storage, 3>& storage) {
    ExpertRecordLayout layout;
    const int64_t shapes[3][2] = {{intermediate, hidden}, {intermediate, hidden}, {hidden, intermediate}};
    size_t offset = 0;
    for (int i = 0; i < 3; ++i) {
        RecordMatrix& m = layout.matrices[size_t(i)];
        const Storage& st = storage[size_t(i)];
        m.format = st.format;
        m.rows = shapes[i][0];
        m.cols = shapes[i][1];
        if (st.format == WeightFormat::Affine) {
            m.bits = st.bits;
            m.group_size = st.group_size;
            m.scale_dtype = st.scale_dtype;
        }
        m.data_offset = offset;
        offset = align_up(offset + m.data_bytes(), 64);
        if (st.format == WeightFormat::Affine) {
            m.scales_offset = offset;
            offset = align_up(offset + m.scale_bytes(), 64);
            m.biases_offset = offset;
            offset = align_up(offset + m.scale_bytes(), 64);
        }
    }
    layout.record_bytes = offset;
    layout.record_stride = align_up(offset, kExpertAlignment);
    return layout;
}

nlohmann::json ExpertRecordLayout::to_json() const {
    nlohmann::json j;
    const char* names[3] = {"gate", "up", "down"};
    for (int i = 0; i < 3; ++i) {
        const RecordMatrix& m = matrices[size_t(i)];
        nlohmann::json e = {{"format", weight_format_name(m.format)}, {"rows", m.rows}, {"cols", m.cols},
                            {"data_offset", m.data_offset}};
        if (m.format == WeightFormat::Affine) {
            e["bits"] = m.bits;
            e["group_size"] = m.group_size;
            e["scale_dtype"] = dtype_name(m.scale_dtype);
            e["scales_offset"] = m.scales_offset;
            e["biases_offset"] = m.biases_offset;
        }
        j["matrices"][names[i]] = e;
    }
    j["record_bytes"] = record_bytes;
    j["record_stride"] = record_stride;
    return j;
}

ExpertRecordLayout ExpertRecordLayout::from_json(const nlohmann::json& j, const std::string& source) {
    ExpertRecordLayout layout;
    try {
        const char* names[3] = {"gate", "up", "down"};
        for (int i = 0; i < 3; ++i) {
            const auto& e = j.at("matrices").at(names[i]);
            RecordMatrix& m = layout.matrices[size_t(i)];
            m.format = format_from_name(e.at("format").get<std::string>(), source);
            m.rows = e.at("rows").get<int64_t>();
            m.cols = e.at("cols").get<int64_t>();
            m.data_offset = e.at("data_offset").get<size_t>();
            if (m.format == WeightFormat::Affine) {
                m.bits = e.at("bits").get<int>();
                m.group_size = e.at("group_size").get<int>();
                m.scale_dtype = dtype_from_name(e.at("scale_dtype").get<std::string>(), source);
                m.scales_offset = e.at("scales_offset").get<size_t>();
                m.biases_offset = e.at("biases_offset").get<size_t>();
                if (m.group_size <= 0 || m.cols % m.group_size != 0 || (m.cols * m.bits) % 32 != 0) {
                    fail(ErrorKind::BadModel, "{}: expert matrix {}: {} columns do not fit {}-bit groups of {}", source,
                         names[i], m.cols, m.bits, m.group_size);
                }
            }
            if (m.rows <= 0 || m.cols <= 0) fail(ErrorKind::BadModel, "{}: expert matrix {} has no rows or columns", source, names[i]);
        }
        layout.record_bytes = j.at("record_bytes").get<size_t>();
        layout.record_stride = j.at("record_stride").get<size_t>();
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::BadModel, "{}: expert record layout: {}", source, e.what());
    }
    for (auto& m : layout.matrices) {
        size_t end = std::max(m.data_offset + m.data_bytes(),
                              m.format == WeightFormat::Affine ? std::max(m.scales_offset, m.biases_offset) + m.scale_bytes() : 0);
        if (end > layout.record_bytes) fail(ErrorKind::BadModel, "{}: expert record layout overruns its record", source);
    }
    if (layout.record_stride < layout.record_bytes || layout.record_stride % kExpertAlignment != 0) {
        fail(ErrorKind::BadModel, "{}: expert record stride {} is not a 4 KiB multiple of at least {} bytes", source,
             layout.record_stride, layout.record_bytes);
    }
    return layout;
}

std::string expert_file_name(int64_t layer) { return fmt::format("experts/layer_{:03d}.bin", layer); }

}  // namespace flashmoe
