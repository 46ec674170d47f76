// Hugging Face datasets on disk, read as Heretic's load_prompts (through the `datasets` library)
// reads a local folder given as a prompt set's path:
//   - a Dataset.save_to_disk folder (state.json + dataset_info.json): the Arrow files state.json
//     lists, in order. It holds one split, so the split's name is not checked (as in Heretic);
//   - a DatasetDict.save_to_disk folder (dataset_dict.json): the split's name picks its
//     sub-folder (Heretic refuses these; schism reads them);
//   - any other folder, as a Hub snapshot or a folder of exported files: its data files
//     (.arrow, .parquet, .csv, .jsonl/.json lines, .txt; every depth, hidden ones skipped, in
//     path order)
//     belong to the split their path names, by the rules of `datasets`' default patterns: a file
//     name that holds a split keyword (train, training; validation, valid, val, dev; test, testing,
//     eval, evaluation) bounded by "-", ".", "_", " " or digits names that split; failing any such
//     file name, a folder name does; failing both, every file is "train".
// Parquet files are read through pyarrow's libparquet (formats/arrow_column.h).
#ifndef SCHISM_COMMON_DATASET_FOLDER_H_
#define SCHISM_COMMON_DATASET_FOLDER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schism::common {

// The values of `column` in every row of split `split_name`, in the dataset's order (no row
// skipped: a dataset's rows are prompts as they are, as in Heretic). Errors name the folder and
// what is missing: the split (listing those there are), the column, a file that cannot be read.
absl::StatusOr<std::vector<std::string>> ReadDatasetFolderColumn(const std::string& folder,
                                                                 const std::string& split_name,
                                                                 const std::string& column);

}  // namespace schism::common

#endif  // SCHISM_COMMON_DATASET_FOLDER_H_
