/* master/main: somirrord's entry point, alone in this file so that everything else links into
 * the tests. */
#include "master/master.h"

int main(int argc, char **argv)
{
    return master_main(argc, argv);
}
