/* task/main: somirror-task's main() only; the program lives in libsm_task.a (task/cli.c). */
#include "task/task.h"

int main(int argc, char **argv)
{
    return task_main(argc, argv);
}
